"""The record store: SQLite in data_dir by default, PostgreSQL when configured.

Synchronous SQLAlchemy; async callers go through ``asyncio.to_thread``. Everything that must
leave a trace (reading an original, release decisions, deletion, token changes) writes its audit
entry in the same transaction as the change itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound
from gateway.model import MessageReport, ScanResult
from gateway.reasons import all_reasons
from gateway.serialize import plain
from gateway.spool import JobMeta
from gateway.store import audit as chain
from gateway.store import audit_keys, migrate, releases, tokens, unlocks, users
from gateway.store.db import Database, database_url, make_engine
from gateway.store.models import (
    AuditHeadRow,
    AuditRow,
    BlobRow,
    MessageReasonRow,
    MessageRow,
    RecipientRow,
    ReleaseRequestRow,
    TokenRow,
    UserRow,
)
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus

log = logging.getLogger(__name__)

__all__ = ["STATUSES", "Store", "database_url", "make_engine"]

# The statuses the mugai_messages gauge reports, as before (not file jobs' done/withheld).
STATUSES = tuple(s for s in MessageStatus if s not in (MessageStatus.DONE, MessageStatus.WITHHELD))


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _like_escape(value: str) -> str:
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


@dataclasses.dataclass(frozen=True)
class MessageQuery:
    status: str = ""
    message_id: str = ""
    sender: str = ""
    recipient: str = ""
    since: datetime | None = None
    until: datetime | None = None
    reason: str = ""  # a reason code of the message or of any of its parts
    limit: int = 50
    cursor: str = ""  # the last id of the previous page (ids are time-ordered)


class Store:
    def __init__(
        self,
        url: str,
        *,
        identity_cooldown: float = users.DEFAULT_COOLDOWN,
        policy: releases.Policy | None = None,
    ) -> None:
        self.identity_cooldown = identity_cooldown  # [admin] identity_cooldown
        self.policy = policy or releases.Policy()
        self.db = Database(url)
        self.engine = self.db.engine
        self.node = socket.gethostname()

    def seal_audit(
        self, key_file: Path, anchor_dir: Path | None, *, create: bool, syslog: str = ""
    ) -> str:
        """MAC every new audit entry with the key file's current key and anchor the chain head
        in ``anchor_dir``. ``create``: make the key file (0600) if it is missing and the chain
        has no MACed entry yet (a fresh install or the upgrade from unkeyed entries); a keyed
        chain whose key file is gone is refused (AuditKeyError). Returns the key id in use."""
        if create and not key_file.exists():
            with self.db.read() as s:
                head = s.get(AuditHeadRow, 1)
            if head is not None and head.mac:
                raise audit_keys.AuditKeyError(
                    f"audit key file {key_file} is missing but the audit log is MACed: "
                    "restore the key file (a new key cannot verify the old entries)"
                )
            try:
                # Records how many entries are unMACed now: all later ones must carry one.
                audit_keys.create_key_file(key_file, head.seq if head is not None else 0)
            except FileExistsError:
                pass  # another node sharing the file made it first
        keyring = audit_keys.load_keyring(key_file)
        anchor = None
        if anchor_dir is not None:
            copy = audit_keys.SyslogCopy(syslog) if syslog else None
            anchor = audit_keys.Anchor(anchor_dir, self.node, copy)
            anchor.ensure()
            self._check_anchor(anchor)
        self.db.seal = chain.Seal(keyring, anchor)
        return keyring.current

    def _check_anchor(self, anchor: audit_keys.Anchor) -> None:
        """Say at start, not only at the next `audit verify`, when the database is older than
        what this node anchored (restored from a backup, or rolled back)."""
        last = anchor.last()
        if last is None:
            return
        seq, entry_hash = last
        with self.db.read() as s:
            row = s.get(AuditRow, seq)
        if row is None or row.hash != entry_hash:
            log.error(
                "job=- audit: the database does not contain anchored entry seq=%d (%s): "
                "restored from an older copy or rewritten; run `mugai audit verify`",
                seq, anchor.path,
            )  # fmt: skip

    def create_schema(self) -> None:
        """Brings the database to the newest schema (alembic upgrade head)."""
        migrate.upgrade(self.engine)

    def close(self) -> None:
        self.db.close()

    # -- writes from the worker ----------------------------------------------------
    def record_received(self, meta: JobMeta, raw: bytes) -> str:
        """Create the record and keep the original; idempotent. Returns the current status."""
        with self.db.write() as s:
            row = s.get(MessageRow, meta.id)
            if row is not None:
                return row.status
            received = datetime.fromtimestamp(meta.received_at or 0, UTC)
            s.add(
                MessageRow(
                    id=meta.id,
                    kind=meta.kind,
                    message_id="",
                    status=MessageStatus.PROCESSING,
                    mail_from=meta.mail_from[:512],
                    rcpt_tos=list(meta.rcpt_tos),
                    subject="",
                    header_from="",
                    filename=meta.filename,
                    received_at=received,
                    updated_at=now(),
                    size=len(raw),
                    sha256=hashlib.sha256(raw).hexdigest(),
                    node=self.node,
                    reasons=[],
                    detail="",
                    tokens=[],
                    parts=[],
                    scan={},
                    timings={},
                    attempts=0,
                    legal_hold=False,
                )
            )
            s.flush()
            for address in dict.fromkeys(r.lower()[:512] for r in meta.rcpt_tos):
                s.add(RecipientRow(message=meta.id, address=address))
            s.add(BlobRow(message=meta.id, kind="original", data=raw))
            return MessageStatus.PROCESSING

    def status(self, mugai_id: str) -> str | None:
        with self.db.read() as s:
            row = s.get(MessageRow, mugai_id)
            return row.status if row else None

    def _update(self, mugai_id: str, **values: Any) -> None:
        with self.db.write() as s:
            row = s.get(MessageRow, mugai_id)
            if row is None:
                raise KeyError(mugai_id)
            for key, value in values.items():
                setattr(row, key, plain(value))
            row.updated_at = now()
            if "reasons" in values or "parts" in values:
                self._index_reasons(s, row)

    @staticmethod
    def _index_reasons(s: Session, row: MessageRow) -> None:
        """Keep message_reasons equal to the union of the message's and its parts' reasons."""
        s.execute(delete(MessageReasonRow).where(MessageReasonRow.message == row.id))
        for code in all_reasons(row.reasons, row.parts):
            s.add(MessageReasonRow(message=row.id, reason=code[:64]))

    def _put_blob(self, s: Session, mugai_id: str, kind: str, data: bytes) -> None:
        blob = s.get(BlobRow, (mugai_id, kind))
        if blob is None:
            s.add(BlobRow(message=mugai_id, kind=kind, data=data))
        else:
            blob.data = data

    @staticmethod
    def report_values(report: MessageReport) -> dict[str, Any]:
        """The report's columns; written in the same transaction as the state change."""
        return {
            "parts": plain(report.parts),
            "tokens": list(report.tokens),
            "subject": report.subject,
            "message_id": report.message_id[:1000],
            "header_from": report.header_from,
            "scan": plain(report.scan) if report.scan is not None else {},
            "timings": dict(report.timings),
        }

    def record_report(self, mugai_id: str, report: MessageReport) -> None:
        self._update(mugai_id, **self.report_values(report))

    def mark_delivered(
        self,
        mugai_id: str,
        sanitized: bytes,
        attempts: int,
        report: MessageReport | None = None,
    ) -> None:
        """Delivered, with the sanitized copy and (one transaction) the report's values."""
        values = self.report_values(report) if report is not None else {}
        with self.db.write() as s:
            row = s.get(MessageRow, mugai_id)
            if row is None:
                raise KeyError(mugai_id)
            for key, value in values.items():
                setattr(row, key, value)
            row.status = MessageStatus.DELIVERED
            row.attempts = attempts
            row.updated_at = now()
            self._put_blob(s, mugai_id, "sanitized", sanitized)
            self._index_reasons(s, row)

    def mark_quarantined(
        self,
        mugai_id: str,
        reason: str,
        detail: str,
        attempts: int,
        scan: ScanResult | None = None,
        report: MessageReport | None = None,
    ) -> None:
        """Quarantined, with the report's values in the same transaction."""
        values = self.report_values(report) if report is not None else {}
        values.update(status=MessageStatus.QUARANTINED, reasons=[reason], detail=detail[:2000])
        values["attempts"] = attempts
        if scan is not None:
            values["scan"] = scan
        self._update(mugai_id, **values)

    def mark_deferred(self, mugai_id: str, reason: str, detail: str, attempts: int) -> None:
        self._update(
            mugai_id,
            status=MessageStatus.DEFERRED,
            reasons=[reason],
            detail=detail[:2000],
            attempts=attempts,
        )

    def mark_file_result(
        self,
        mugai_id: str,
        *,
        status: str,
        reasons: list[str],
        sanitized: bytes | None,
        attempts: int,
        report: MessageReport | None = None,
    ) -> None:
        """A file job's end: ``done`` with the rebuilt file (or zip), or ``withheld``; with
        the report's values in the same transaction."""
        values = self.report_values(report) if report is not None else {}
        with self.db.write() as s:
            row = s.get(MessageRow, mugai_id)
            if row is None:
                raise KeyError(mugai_id)
            for key, value in values.items():
                setattr(row, key, value)
            row.status = status
            row.reasons = list(reasons)
            row.attempts = attempts
            row.updated_at = now()
            if sanitized is not None:
                self._put_blob(s, mugai_id, "sanitized", sanitized)
            self._index_reasons(s, row)

    # -- reads ------------------------------------------------------------------------
    def get(self, mugai_id: str) -> MessageRow | None:
        with self.db.read() as s:
            return s.get(MessageRow, mugai_id)

    def blob(self, mugai_id: str, kind: str) -> bytes | None:
        with self.db.read() as s:
            row = s.get(BlobRow, (mugai_id, kind))
            return row.data if row else None

    def has_blob(self, mugai_id: str, kind: str) -> bool:
        with self.db.read() as s:
            found = s.scalar(
                select(func.count())
                .select_from(BlobRow)
                .where(BlobRow.message == mugai_id, BlobRow.kind == kind)
            )
            return bool(found)

    def find(self, *, message_id: str = "", status: str = "", limit: int = 50) -> list[MessageRow]:
        return self.search(MessageQuery(message_id=message_id, status=status, limit=limit))

    def search(self, q: MessageQuery) -> list[MessageRow]:
        """Newest first; keyset pagination on the (time-ordered) id."""
        stmt = select(MessageRow).order_by(MessageRow.id.desc()).limit(q.limit)
        if q.cursor:
            stmt = stmt.where(MessageRow.id < q.cursor)
        if q.status:
            stmt = stmt.where(MessageRow.status == q.status)
        if q.message_id:
            mid = q.message_id.strip().strip("<>")
            stmt = stmt.where(MessageRow.message_id.in_([f"<{mid}>", mid]))
        if q.sender:
            sender = q.sender.strip().lower()
            stmt = stmt.where(
                or_(
                    func.lower(MessageRow.mail_from) == sender,
                    func.lower(MessageRow.header_from).like(
                        f"%{_like_escape(sender)}%", escape="!"
                    ),
                )
            )
        if q.recipient:
            stmt = stmt.where(
                MessageRow.id.in_(
                    select(RecipientRow.message).where(
                        RecipientRow.address == q.recipient.strip().lower()
                    )
                )
            )
        if q.reason:
            stmt = stmt.where(
                MessageRow.id.in_(
                    select(MessageReasonRow.message).where(MessageReasonRow.reason == q.reason)
                )
            )
        if q.since is not None:
            stmt = stmt.where(MessageRow.received_at >= utc(q.since))
        if q.until is not None:
            stmt = stmt.where(MessageRow.received_at < utc(q.until))
        with self.db.read() as s:
            return list(s.scalars(stmt))

    def counts_by_status(self) -> dict[str, int]:
        with self.db.read() as s:
            rows = s.execute(
                select(MessageRow.status, func.count()).group_by(MessageRow.status)
            ).all()
            return {str(status): int(n) for status, n in rows}

    def reason_counts(self) -> dict[tuple[str, str], int]:
        """(status, reason) → messages, for quarantined and deferred records."""
        counts: dict[tuple[str, str], int] = {}
        with self.db.read() as s:
            rows = s.execute(
                select(MessageRow.status, cast(MessageRow.reasons, Text), func.count())
                .where(MessageRow.status.in_((MessageStatus.QUARANTINED, MessageStatus.DEFERRED)))
                .group_by(MessageRow.status, cast(MessageRow.reasons, Text))
            ).all()
        for status, reasons_json, n in rows:
            try:
                reasons = json.loads(reasons_json or "[]")
            except ValueError:
                reasons = []
            for reason in reasons if isinstance(reasons, list) else []:
                key = (str(status), str(reason))
                counts[key] = counts.get(key, 0) + int(n)
        return counts

    # -- audited actions on messages ----------------------------------------------------
    def read_original(self, mugai_id: str, who: Principal) -> bytes:
        """The original bytes; the read is audited before anything is returned."""
        with self.db.write() as s:
            msg = s.get(MessageRow, mugai_id)
            if msg is None:
                raise NotFound("message_not_found")
            blob = s.get(BlobRow, (mugai_id, "original"))
            if blob is None:
                raise Conflict("original_deleted")
            chain.append(
                s, who.actor, "original.read", mugai_id, {"sha256": msg.sha256, "size": msg.size}
            )
            return blob.data

    def delete_message(self, mugai_id: str, who: Principal) -> MessageRow:
        """Admin deletion: the original and sanitized bytes go; the record and audit stay."""
        with self.db.write() as s:
            msg = s.get(MessageRow, mugai_id)
            if msg is None:
                raise NotFound("message_not_found")
            if msg.legal_hold:
                raise Conflict("legal_hold")
            if msg.status in (MessageStatus.PROCESSING, MessageStatus.DEFERRED):
                raise Conflict("message_in_progress")
            s.execute(delete(BlobRow).where(BlobRow.message == mugai_id))
            previous = msg.status
            msg.status = MessageStatus.DELETED
            msg.updated_at = now()
            chain.append(s, who.actor, "message.delete", mugai_id, {"previous_status": previous})
            return msg

    def set_legal_hold(self, mugai_id: str, hold: bool, who: Principal) -> MessageRow:
        with self.db.write() as s:
            msg = s.get(MessageRow, mugai_id)
            if msg is None:
                raise NotFound("message_not_found")
            msg.legal_hold = hold
            chain.append(s, who.actor, "message.legal_hold", mugai_id, {"hold": hold})
            return msg

    # -- release requests ---------------------------------------------------------------
    def request_release(
        self,
        mugai_id: str,
        reason: str,
        who: Principal,
        *,
        kind: str = releases.ReleaseKind.ORIGINAL,
        category: str = releases.ExceptionCategory.OTHER,
        confirm_signature: str = "",
    ) -> ReleaseRequestRow:
        with self.db.write() as s:
            return releases.create(
                s, mugai_id, reason, who, kind=kind, category=category,
                confirm_signature=confirm_signature, policy=self.policy,
            )  # fmt: skip

    def approve_release(
        self,
        rid: str,
        who: Principal,
        rcpt_tos: Sequence[str] | None = None,
        reason: str = "",
        *,
        confirm_signature: str = "",
    ) -> tuple[ReleaseRequestRow, MessageRow, bytes]:
        with self.db.write() as s:
            return releases.approve(
                s, rid, who, rcpt_tos, reason,
                confirm_signature=confirm_signature, policy=self.policy,
                cooldown=self.identity_cooldown,
            )  # fmt: skip

    def finish_release(
        self, rid: str, who: Principal, attempt: str, ok: bool, result: dict[str, Any]
    ) -> bool:
        """Record the relay's answer; False if this attempt was superseded (not recorded)."""
        with self.db.write() as s:
            return releases.finish(s, rid, who, attempt, ok, result)

    def reject_release(self, rid: str, who: Principal, reason: str = "") -> ReleaseRequestRow:
        with self.db.write() as s:
            return releases.reject(s, rid, who, reason, self.policy, self.identity_cooldown)

    def reopen_release(self, mugai_id: str, who: Principal, reason: str) -> ReleaseRequestRow:
        with self.db.write() as s:
            return releases.reopen(s, mugai_id, who, reason)

    def release_request(self, rid: str) -> ReleaseRequestRow | None:
        with self.db.read() as s:
            return s.get(ReleaseRequestRow, rid)

    def release_requests(
        self, *, status: str = "", message: str = "", limit: int = 50, cursor: str = ""
    ) -> list[ReleaseRequestRow]:
        stmt = select(ReleaseRequestRow).order_by(
            ReleaseRequestRow.requested_at.desc(), ReleaseRequestRow.id.desc()
        )
        if status:
            stmt = stmt.where(ReleaseRequestRow.status == status)
        if message:
            stmt = stmt.where(ReleaseRequestRow.message == message)
        if cursor:
            with self.db.read() as s:
                anchor = s.get(ReleaseRequestRow, cursor)
            if anchor is None:
                return []
            stmt = stmt.where(
                or_(
                    ReleaseRequestRow.requested_at < anchor.requested_at,
                    (ReleaseRequestRow.requested_at == anchor.requested_at)
                    & (ReleaseRequestRow.id < anchor.id),
                )
            )
        with self.db.read() as s:
            return list(s.scalars(stmt.limit(limit)))

    # -- audit ---------------------------------------------------------------------------
    def audit(
        self, actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None
    ) -> int:
        """Append one entry (e.g. ``store.audit("system", "config.reload")``); returns its seq."""
        with self.db.write() as s:
            return chain.append(s, actor, action, target, detail).seq

    def audit_entries(
        self, *, before: int = 0, limit: int = 100, action: str = "", target: str = ""
    ) -> list[AuditRow]:
        """Newest first; ``before`` is the seq cursor."""
        stmt = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
        if before:
            stmt = stmt.where(AuditRow.seq < before)
        if action:
            stmt = stmt.where(AuditRow.action == action)
        if target:
            stmt = stmt.where(AuditRow.target == target)
        with self.db.read() as s:
            return list(s.scalars(stmt))

    def verify_audit(self) -> chain.VerifyReport:
        """Hashes and links; MACs and the anchor files too once ``seal_audit`` was called."""
        seal: chain.Seal | None = self.db.seal
        with self.db.read() as s:
            if seal is None:
                return chain.verify(s)
            return chain.verify(s, keyring=seal.keyring, anchor=seal.anchor)

    def audit_is_keyed(self) -> bool:
        with self.db.read() as s:
            head = s.get(AuditHeadRow, 1)
            return bool(head is not None and head.mac)

    # -- persons and tokens (gateway/store/users.py) -------------------------------------
    def create_user(self, name: str, role: str, actor: str) -> UserRow:
        with self.db.write() as s:
            return users.create(s, name, role, actor)

    def set_user_role(self, name: str, role: str, actor: str) -> UserRow:
        with self.db.write() as s:
            return users.set_role(s, name, role, actor)

    def list_users(self) -> list[UserRow]:
        with self.db.read() as s:
            return users.list_all(s)

    def create_token(self, name: str, role: str, actor: str) -> tuple[str, TokenRow]:
        """A token for the person NAME, created with ROLE when absent (DESIGN.md §4.1)."""
        plain = tokens.new_token()
        with self.db.write() as s:
            user = users.ensure(s, name, role, actor)
            row = TokenRow(
                user_id=user.id,
                name=user.name,
                role=user.role,
                token_hash=tokens.token_hash(plain),
                created_at=now(),
                created_by=actor[:128],
                revoked_at=None,
            )
            s.add(row)
            s.flush()
            chain.append(s, actor, "token.create", name, {"token": row.id, "role": user.role})
            return plain, row

    def revoke_tokens(self, ident: str, actor: str) -> list[TokenRow]:
        """Revoke by numeric id or by person (every active token of that name)."""
        with self.db.write() as s:
            stmt = select(TokenRow).where(TokenRow.revoked_at.is_(None))
            if ident.isdigit():
                stmt = stmt.where(TokenRow.id == int(ident))
            else:
                stmt = stmt.where(TokenRow.name == ident)
            rows = list(s.scalars(stmt))
            for row in rows:
                row.revoked_at = now()
                chain.append(s, actor, "token.revoke", row.name, {"token": row.id})
            return rows

    def list_tokens(self) -> list[TokenRow]:
        with self.db.read() as s:
            return list(s.scalars(select(TokenRow).order_by(TokenRow.id)))

    def principal_of(self, token_id: int) -> Principal | None:
        """Who an active token stands for now (the console re-checks its sessions with it)."""
        with self.db.read() as s:
            found = s.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
            ).first()
            if found is None:
                return None
            row, user = found
            return Principal(row.id, user.name, user.role, user.id)

    def authenticate(self, token: str) -> Principal | None:
        """The person behind an active token; their role is the person's current one."""
        if not token or len(token) > tokens.MAX_TOKEN_CHARS:
            return None
        with self.db.read() as s:
            found = s.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(
                    TokenRow.token_hash == tokens.token_hash(token), TokenRow.revoked_at.is_(None)
                )
            ).first()
            if found is None:
                return None  # unknown, revoked, or (never after 0003) a token without a person
            row, user = found
            return Principal(row.id, user.name, user.role, user.id)

    # -- PPAP unlock (issue 12): bookkeeping in the audit log, see gateway/store/unlocks.py --
    def begin_unlock(
        self, mugai_id: str, part: str, who: Principal, *, max_wrong: int, window: float
    ) -> unlocks.Begun:
        with self.db.write() as s:
            return unlocks.begin(s, mugai_id, part, who, max_wrong=max_wrong, window=window)

    def refuse_unlock(self, mugai_id: str, part: str, who: Principal, reason: str) -> None:
        with self.db.write() as s:
            unlocks.refused(s, mugai_id, part, who, reason)

    def finish_unlock(
        self,
        mugai_id: str,
        attempt: int,
        part: str,
        who: Principal,
        outcome: str,
        detail: dict[str, Any],
        delivered: bytes | None = None,
    ) -> None:
        with self.db.write() as s:
            unlocks.finish(s, mugai_id, attempt, part, who, outcome, detail, delivered)

    def unlock_wrong_count(self, mugai_id: str, window: float) -> int:
        with self.db.read() as s:
            return unlocks.wrong_in_window(s, mugai_id, window)
