"""The record store: SQLite in data_dir by default, PostgreSQL when configured.

Synchronous SQLAlchemy; async callers go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import enum
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.model import PartReport, ScanResult
from gateway.spool import JobMeta
from gateway.store.models import Base, BlobRow, MessageRow

FINAL_STATUSES = frozenset({"delivered", "quarantined", "released", "deleted"})


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return sorted(_jsonable(v) for v in value)
    return value


def now() -> datetime:
    return datetime.now(UTC)


def database_url(url: str, data_dir: Path) -> str:
    if not url:
        return f"sqlite:///{(data_dir / 'mugai.db').resolve()}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Store:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self.node = socket.gethostname()

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes from the worker ----------------------------------------------------
    def record_received(self, meta: JobMeta, raw: bytes) -> str:
        """Create the record and keep the original; idempotent. Returns the current status."""
        with self.session.begin() as s:
            row = s.get(MessageRow, meta.id)
            if row is not None:
                return row.status
            received = datetime.fromtimestamp(meta.received_at or 0, UTC)
            s.add(
                MessageRow(
                    id=meta.id,
                    kind=meta.kind,
                    status="processing",
                    mail_from=meta.mail_from,
                    rcpt_tos=list(meta.rcpt_tos),
                    filename=meta.filename,
                    received_at=received,
                    updated_at=now(),
                    size=len(raw),
                    node=self.node,
                    reasons=[],
                    tokens=[],
                    parts=[],
                    scan={},
                    timings={},
                )
            )
            s.flush()
            s.add(BlobRow(message=meta.id, kind="original", data=raw))
            return "processing"

    def status(self, mugai_id: str) -> str | None:
        with self.session() as s:
            row = s.get(MessageRow, mugai_id)
            return row.status if row else None

    def _update(self, mugai_id: str, **values: Any) -> None:
        with self.session.begin() as s:
            row = s.get(MessageRow, mugai_id)
            if row is None:
                raise KeyError(mugai_id)
            for key, value in values.items():
                setattr(row, key, _jsonable(value))
            row.updated_at = now()

    def _put_blob(self, s: Session, mugai_id: str, kind: str, data: bytes) -> None:
        blob = s.get(BlobRow, (mugai_id, kind))
        if blob is None:
            s.add(BlobRow(message=mugai_id, kind=kind, data=data))
        else:
            blob.data = data

    def record_report(
        self,
        mugai_id: str,
        *,
        parts: Sequence[PartReport],
        tokens: Sequence[str],
        subject: str,
        message_id: str,
        header_from: str,
        scan: ScanResult | None,
        timings: dict[str, float],
    ) -> None:
        self._update(
            mugai_id,
            parts=list(parts),
            tokens=list(tokens),
            subject=subject,
            message_id=message_id,
            header_from=header_from,
            scan=scan or {},
            timings=timings,
        )

    def mark_delivered(self, mugai_id: str, sanitized: bytes, attempts: int) -> None:
        with self.session.begin() as s:
            row = s.get(MessageRow, mugai_id)
            if row is None:
                raise KeyError(mugai_id)
            row.status = "delivered"
            row.attempts = attempts
            row.updated_at = now()
            self._put_blob(s, mugai_id, "sanitized", sanitized)

    def mark_quarantined(
        self, mugai_id: str, reason: str, detail: str, attempts: int, scan: ScanResult | None = None
    ) -> None:
        values: dict[str, Any] = {
            "status": "quarantined",
            "reasons": [reason],
            "detail": detail[:2000],
            "attempts": attempts,
        }
        if scan is not None:
            values["scan"] = scan
        self._update(mugai_id, **values)

    def mark_deferred(self, mugai_id: str, reason: str, detail: str, attempts: int) -> None:
        self._update(
            mugai_id, status="deferred", reasons=[reason], detail=detail[:2000], attempts=attempts
        )

    # -- reads ------------------------------------------------------------------------
    def get(self, mugai_id: str) -> MessageRow | None:
        with self.session() as s:
            return s.get(MessageRow, mugai_id)

    def blob(self, mugai_id: str, kind: str) -> bytes | None:
        with self.session() as s:
            row = s.get(BlobRow, (mugai_id, kind))
            return row.data if row else None

    def find(self, *, message_id: str = "", status: str = "", limit: int = 50) -> list[MessageRow]:
        with self.session() as s:
            q = select(MessageRow).order_by(MessageRow.id.desc()).limit(limit)
            if message_id:
                mid = message_id.strip().strip("<>")
                q = q.where(MessageRow.message_id == f"<{mid}>")
            if status:
                q = q.where(MessageRow.status == status)
            return list(s.scalars(q))
