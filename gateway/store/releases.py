"""Release: an operator asks (with a reason), a different person approves; one outcome per message.

States of a request::

    pending ──approve──▶ approved ──relay took it──▶ released ──admin reopen──▶ (released, reopened)
       │                    │  └──relay refused──▶ failed ──approve──▶ approved …
       └──reject──▶ rejected └─(crash: no answer for stale_approval)──approve──▶ approved …

Per message at most one request is open (pending, approved, failed) or released and not reopened;
a partial unique index enforces it in the database too, so two racing requests cannot both
win. Each approval gets a fresh ``attempt`` id and only that attempt may record the delivery,
so a late answer of an approval that was given up for dead is never recorded a second time.

Two kinds: ``original`` (the untouched original: the guideline's 例外措置, with a category,
marked as an exception in the audit) and ``sanitized`` (re-delivery of the sanitized copy).
Infected originals (virus_found, virus_found_output) are refused unless the release policy
allows them, and then the request and the approval must both name the signature.

These functions run inside Database.write() transactions so the state change and its audit
entry commit together.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.errors import Conflict, Invalid, NotAllowed, NotFound
from gateway.reasons import INFECTED, all_reasons
from gateway.store import audit, users
from gateway.store.models import BlobRow, MessageRow, ReleaseRequestRow
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus, ReleaseStatus

MAX_REASON = 2000
OPEN = frozenset({ReleaseStatus.PENDING, ReleaseStatus.APPROVED, ReleaseStatus.FAILED})
APPROVABLE = frozenset({ReleaseStatus.PENDING, ReleaseStatus.FAILED})
# Longer than any relay delivery can take (connect + DATA timeouts), so never a live one.
STALE_APPROVAL_SECONDS = 15 * 60


class ReleaseKind(enum.StrEnum):
    ORIGINAL = "original"  # the untouched original: 例外措置
    SANITIZED = "sanitized"  # the sanitized copy again (e.g. after a PPAP unlock)


class ExceptionCategory(enum.StrEnum):
    """Why an untouched original may cross (recorded with the request; labels in reasons.py)."""

    BUSINESS_REQUIRED = "business_required"  # 業務上、原本の形式が必要
    SENDER_VERIFIED = "sender_verified"  # 送信元に確認済み
    CANNOT_SANITIZE = "cannot_sanitize"  # 無害化できない形式
    LEGAL = "legal"  # 法令・訴訟対応
    OTHER = "other"  # その他（理由に記載）
    EXCEPTION = "exception"  # 区分の指定なし（API の既定、DESIGN.md §4.5）


@dataclass(frozen=True)
class Policy:
    allow_infected: bool = False
    stale_approval: float = STALE_APPROVAL_SECONDS


def _now() -> datetime:
    return datetime.now(UTC)


def _text(reason: str) -> str:
    """A reason as stored: stripped; control characters other than tab and line ends refused
    (PostgreSQL cannot store a NUL: a 500 instead of a refusal)."""
    if any((ord(c) < 32 and c not in "\t\r\n") or ord(c) == 127 for c in reason):
        raise Invalid("reason_control_characters")
    return reason.strip()


def same_person(req: ReleaseRequestRow, who: Principal) -> bool:
    """The two-person rule's one comparison: names are unique persons (store/users.py)."""
    return req.requested_by == who.name


def signature_of(msg: MessageRow) -> str:
    """The virus signature of an infected message ('' if it is not infected)."""
    if not INFECTED & set(all_reasons(msg.reasons, msg.parts)):
        return ""
    scan = msg.scan if isinstance(msg.scan, dict) else {}
    return str(scan.get("signature") or msg.detail or "unknown").strip()


def _message(s: Session, mugai_id: str) -> MessageRow:
    # Locked so two requests for one message serialise (SQLite: the write lock is held already).
    msg = s.scalar(select(MessageRow).where(MessageRow.id == mugai_id).with_for_update())
    if msg is None:
        raise NotFound("message_not_found")
    if msg.kind != "mail":
        raise Conflict("not_a_mail")  # uploaded files have no recipients to release to
    if msg.status == MessageStatus.DELETED or s.get(BlobRow, (mugai_id, "original")) is None:
        raise Conflict("original_deleted")
    if msg.status in (MessageStatus.PROCESSING, MessageStatus.DEFERRED):
        raise Conflict("message_in_progress")
    return msg


def _check_infected(msg: MessageRow, policy: Policy, confirm_signature: str) -> str:
    signature = signature_of(msg)
    if not signature:
        return ""
    if not policy.allow_infected:
        raise NotAllowed("infected_release_forbidden")
    if confirm_signature.strip() != signature:
        raise Invalid("confirm_signature_mismatch", signature)
    return signature


def _blocking(s: Session, mugai_id: str) -> ReleaseRequestRow | None:
    stmt = select(ReleaseRequestRow).where(ReleaseRequestRow.message == mugai_id)
    for row in s.scalars(stmt):
        if row.status in OPEN or (row.status == ReleaseStatus.RELEASED and row.reopened_at is None):
            return row
    return None


def create(
    s: Session,
    mugai_id: str,
    reason: str,
    who: Principal,
    *,
    kind: str = ReleaseKind.ORIGINAL,
    category: str = "",
    confirm_signature: str = "",
    policy: Policy = Policy(),  # noqa: B008 - frozen
) -> ReleaseRequestRow:
    reason = _text(reason)
    if not reason:
        raise Invalid("reason_required")
    try:
        kind = ReleaseKind(kind)
    except ValueError:
        raise Invalid("unknown_release_kind") from None
    msg = _message(s, mugai_id)
    signature = ""
    if kind is ReleaseKind.ORIGINAL:
        try:
            category = ExceptionCategory(category).value
        except ValueError:
            raise Invalid("exception_category_required") from None
        signature = _check_infected(msg, policy, confirm_signature)
    else:
        category = ""
        if s.get(BlobRow, (mugai_id, "sanitized")) is None:
            raise Conflict("no_sanitized_copy")
    blocking = _blocking(s, mugai_id)
    if blocking is not None:
        code = (
            "already_released"
            if blocking.status == ReleaseStatus.RELEASED
            else "release_request_open"
        )
        raise Conflict(code, blocking.id)
    row = ReleaseRequestRow(
        id=secrets.token_hex(10),
        message=mugai_id,
        status=ReleaseStatus.PENDING,
        reason=reason[:MAX_REASON],
        requested_by=who.name,
        requested_at=_now(),
        decided_by="",
        decided_at=None,
        decision_reason="",
        rcpt_tos=[],
        result={},
        kind=kind.value,
        category=category,
        exception=kind is ReleaseKind.ORIGINAL,
        confirmed_signature=signature,
        attempt="",
        reopened_at=None,
        reopened_by="",
        reopen_reason="",
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        # Another node inserted one in between (PostgreSQL); the index is the last word.
        raise Conflict("release_request_open") from None
    detail: dict[str, Any] = {"request": row.id, "reason": row.reason, "kind": row.kind}
    if row.exception:
        detail.update(exception=True, category=row.category)
    if signature:
        detail["infected"] = signature
    audit.append(s, who.actor, "release.request", mugai_id, detail)
    return row


def _stale(decided_at: datetime | None, policy: Policy) -> bool:
    if decided_at is None:
        return False
    if decided_at.tzinfo is None:  # SQLite hands back naive UTC
        decided_at = decided_at.replace(tzinfo=UTC)
    return (_now() - decided_at).total_seconds() > policy.stale_approval


def _decidable(
    s: Session, rid: str, who: Principal, policy: Policy, cooldown: float
) -> ReleaseRequestRow:
    req = s.scalar(select(ReleaseRequestRow).where(ReleaseRequestRow.id == rid).with_for_update())
    if req is None:
        raise NotFound("request_not_found")
    if same_person(req, who):
        # The two-person rule: whatever the role, nobody decides their own request.
        raise NotAllowed("approver_is_requester")
    if users.linked(s, req.requested_by, who.name, cooldown):
        # One of them just created, re-roled or issued a token to the other: not two people
        # we can tell apart yet (see gateway/store/users.py).
        raise NotAllowed("approver_linked_to_requester")
    if req.status == ReleaseStatus.APPROVED and _stale(req.decided_at, policy):
        # The process that was delivering it died between approval and the relay's answer:
        # a new approval retries (a new attempt id: the dead one can no longer record).
        return req
    if req.status not in APPROVABLE:
        raise Conflict(f"request_{req.status}")
    return req


def approve(
    s: Session,
    rid: str,
    who: Principal,
    rcpt_tos: Sequence[str] | None,
    reason: str,
    *,
    confirm_signature: str = "",
    policy: Policy = Policy(),  # noqa: B008 - frozen
    cooldown: float = users.DEFAULT_COOLDOWN,
) -> tuple[ReleaseRequestRow, MessageRow, bytes]:
    """Mark approved and return what to deliver; the caller sends, then calls ``finish``
    with ``req.attempt``."""
    reason = _text(reason)
    req = _decidable(s, rid, who, policy, cooldown)
    msg = _message(s, req.message)
    signature = ""
    if req.kind == ReleaseKind.ORIGINAL:
        # Checked again: the policy may have changed since the request.
        signature = _check_infected(msg, policy, confirm_signature)
    original = list(msg.rcpt_tos)
    if rcpt_tos:
        wanted = list(dict.fromkeys(rcpt_tos))
        lowered = {r.lower() for r in original}
        strangers = [r for r in wanted if r.lower() not in lowered]
        if strangers:
            # The original goes only to people it was addressed to.
            raise Conflict("recipient_not_in_original")
        targets = wanted
    else:
        targets = original
    blob_kind = "original" if req.kind == ReleaseKind.ORIGINAL else "sanitized"
    blob = s.get(BlobRow, (msg.id, blob_kind))
    if blob is None:
        raise Conflict("original_deleted" if blob_kind == "original" else "no_sanitized_copy")
    retry = req.status == ReleaseStatus.APPROVED
    previous = req.attempt
    req.status = ReleaseStatus.APPROVED
    req.attempt = secrets.token_hex(8)
    req.decided_by = who.name
    req.decided_at = _now()
    req.decision_reason = reason.strip()[:MAX_REASON]
    req.rcpt_tos = targets
    detail: dict[str, Any] = {
        "request": rid,
        "rcpt_tos": targets,
        "reason": req.decision_reason,
        "kind": req.kind,
        "attempt": req.attempt,
    }
    if req.exception:
        detail.update(exception=True, category=req.category)
    if signature:
        detail["infected"] = signature
    if retry:
        detail["interrupted_attempt"] = previous
    audit.append(s, who.actor, "release.approve", msg.id, detail)
    return req, msg, blob.data


def finish(
    s: Session, rid: str, who: Principal, attempt: str, ok: bool, result: dict[str, Any]
) -> bool:
    """Record the relay's answer once; False (and an audit note) for a superseded attempt."""
    req = s.scalar(select(ReleaseRequestRow).where(ReleaseRequestRow.id == rid).with_for_update())
    if req is None:
        raise NotFound("request_not_found")
    if req.status != ReleaseStatus.APPROVED or req.attempt != attempt:
        audit.append(
            s, who.actor, "release.late_result", req.message,
            {"request": rid, "attempt": attempt, "ok": ok, **result},
        )  # fmt: skip
        return False
    req.status = ReleaseStatus.RELEASED if ok else ReleaseStatus.FAILED
    req.result = result
    if ok:
        msg = s.get(MessageRow, req.message)
        if msg is not None:
            msg.status = MessageStatus.RELEASED
            msg.updated_at = _now()
    audit.append(
        s, who.actor, "release.delivered" if ok else "release.failed", req.message,
        {"request": rid, "attempt": attempt, **result},
    )  # fmt: skip
    return True


def reject(
    s: Session,
    rid: str,
    who: Principal,
    reason: str,
    policy: Policy = Policy(),  # noqa: B008 - frozen
    cooldown: float = users.DEFAULT_COOLDOWN,
) -> ReleaseRequestRow:
    reason = _text(reason)
    req = _decidable(s, rid, who, policy, cooldown)
    req.status = ReleaseStatus.REJECTED
    req.attempt = ""  # an interrupted approval's late answer can no longer record a delivery
    req.decided_by = who.name
    req.decided_at = _now()
    req.decision_reason = reason.strip()[:MAX_REASON]
    audit.append(
        s, who.actor, "release.reject", req.message, {"request": rid, "reason": req.decision_reason}
    )
    return req


def reopen(s: Session, mugai_id: str, who: Principal, reason: str) -> ReleaseRequestRow:
    """An admin allows a released message to be released once more (audited, with a reason)."""
    reason = _text(reason)
    if not reason:
        raise Invalid("reason_required")
    if not who.can("reopen"):
        raise NotAllowed("admin_required")
    _message(s, mugai_id)
    blocking = _blocking(s, mugai_id)
    if blocking is None or blocking.status != ReleaseStatus.RELEASED:
        raise Conflict("not_released", blocking.id if blocking else "")
    blocking.reopened_at = _now()
    blocking.reopened_by = who.name
    blocking.reopen_reason = reason[:MAX_REASON]
    audit.append(
        s, who.actor, "release.reopen", mugai_id, {"request": blocking.id, "reason": reason}
    )
    return blocking
