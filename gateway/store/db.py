"""Engine and sessions. Two kinds of transaction:

- ``read()``: reads only (on SQLite a deferred BEGIN: a consistent WAL snapshot);
- ``write()``: every write. On SQLite it starts with ``BEGIN IMMEDIATE``: the write lock is
  taken up front, so a read-then-write (e.g. reading the audit chain head, then appending)
  never interleaves with another writer and never fails upgrading a read lock; on PostgreSQL
  the audit chain-head row is locked with ``SELECT … FOR UPDATE`` inside (see audit.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "mugai_immediate"
# The same keys as gateway/store/audit.py (SEAL, PENDING); not imported to keep db.py a leaf.
SEAL_KEY = "mugai_audit_seal"
PENDING_KEY = "mugai_audit_pending"
log = logging.getLogger(__name__)


def database_url(url: str, data_dir: Path) -> str:
    if not url:
        return f"sqlite:///{(data_dir / 'mugai.db').resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN is turned off so that _begin below decides the mode.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._plain: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self.seal: Any = None  # gateway.store.audit.Seal, set by Store.seal_audit
        self._locked: sessionmaker[Session] = sessionmaker(
            self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._plain() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (may append audit entries; see the module docstring).

        Audit entries are MACed with ``self.seal`` (gateway/store/audit.py), and the chain head
        is anchored outside the database once the transaction has committed."""
        with self._locked.begin() as s:
            if self.seal is not None:
                s.info[SEAL_KEY] = self.seal
            yield s
        heads = s.info.pop(PENDING_KEY, None)
        anchor = self.seal.anchor if self.seal is not None else None
        if heads and anchor is not None:
            for seq, entry_hash, mac in heads:
                try:
                    anchor.write(seq, entry_hash, mac)
                except OSError as exc:
                    # Committed already; the anchor lags (verify reports only what it has).
                    log.error("job=- audit anchor not written seq=%s: %s", seq, exc.strerror)

    def close(self) -> None:
        self.engine.dispose()
