"""Two-person release: an operator asks (with a reason), a different person approves.

State: pending → approved (delivery under way) → released | failed; pending → rejected.
A failed delivery can be approved again. These functions run inside Database.write()
transactions so the state change and its audit entry commit together.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.store import audit, users
from gateway.store.errors import Conflict, NotAllowed, NotFound
from gateway.store.models import BlobRow, MessageRow, ReleaseRequestRow
from gateway.store.tokens import Principal

APPROVABLE = frozenset({"pending", "failed"})
MAX_REASON = 2000
# Longer than any relay delivery can take (connect + DATA timeouts), so never a live one.
STALE_APPROVAL_SECONDS = 15 * 60


def _now() -> datetime:
    return datetime.now(UTC)


def _message_with_original(s: Session, mugai_id: str) -> MessageRow:
    msg = s.get(MessageRow, mugai_id)
    if msg is None:
        raise NotFound("message_not_found")
    if msg.kind != "mail":
        raise Conflict("not_a_mail")  # uploaded files have no recipients to release to
    if msg.status == "deleted" or s.get(BlobRow, (mugai_id, "original")) is None:
        raise Conflict("original_deleted")
    if msg.status in ("processing", "deferred"):
        raise Conflict("message_in_progress")
    return msg


def create(s: Session, mugai_id: str, reason: str, who: Principal) -> ReleaseRequestRow:
    reason = reason.strip()
    if not reason:
        raise Conflict("reason_required")
    _message_with_original(s, mugai_id)
    row = ReleaseRequestRow(
        id=secrets.token_hex(10),
        message=mugai_id,
        status="pending",
        reason=reason[:MAX_REASON],
        requested_by=who.name,
        requested_at=_now(),
        decided_by="",
        decided_at=None,
        decision_reason="",
        rcpt_tos=[],
        result={},
    )
    s.add(row)
    s.flush()
    detail = {"request": row.id, "reason": row.reason}
    audit.append(s, who.actor, "release.request", mugai_id, detail)
    return row


def _decidable(
    s: Session, rid: str, who: Principal, cooldown: float = users.DEFAULT_COOLDOWN
) -> ReleaseRequestRow:
    req = s.get(ReleaseRequestRow, rid)
    if req is None:
        raise NotFound("request_not_found")
    if req.requested_by == who.name:
        # The two-person rule: whatever the role, nobody decides their own request. Names
        # are unique persons, so a second token of the requester is the requester.
        raise NotAllowed("approver_is_requester")
    if users.linked(s, req.requested_by, who.name, cooldown):
        # One of them just created, re-roled or issued a token to the other: not two people
        # we can tell apart yet (see gateway/store/users.py).
        raise NotAllowed("approver_linked_to_requester")
    if req.status == "approved" and _stale(req.decided_at):
        # The process that was delivering it died between approval and the relay's answer:
        # a new approval retries, rather than leaving the request stuck for ever.
        return req
    if req.status not in APPROVABLE:
        raise Conflict(f"request_{req.status}")
    return req


def _stale(decided_at: datetime | None) -> bool:
    if decided_at is None:
        return False
    if decided_at.tzinfo is None:  # SQLite hands back naive UTC
        decided_at = decided_at.replace(tzinfo=UTC)
    return (_now() - decided_at).total_seconds() > STALE_APPROVAL_SECONDS


def approve(
    s: Session,
    rid: str,
    who: Principal,
    rcpt_tos: Sequence[str] | None,
    reason: str,
    cooldown: float = users.DEFAULT_COOLDOWN,
) -> tuple[ReleaseRequestRow, MessageRow, bytes]:
    """Mark approved and return what to deliver; the caller sends, then calls ``finish``."""
    req = _decidable(s, rid, who, cooldown)
    msg = _message_with_original(s, req.message)
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
    blob = s.get(BlobRow, (msg.id, "original"))
    assert blob is not None  # checked by _message_with_original
    req.status = "approved"
    req.decided_by = who.name
    req.decided_at = _now()
    req.decision_reason = reason.strip()[:MAX_REASON]
    req.rcpt_tos = targets
    audit.append(
        s,
        who.actor,
        "release.approve",
        msg.id,
        {"request": rid, "rcpt_tos": targets, "reason": req.decision_reason},
    )
    return req, msg, blob.data


def finish(s: Session, rid: str, who: Principal, ok: bool, result: dict[str, Any]) -> None:
    req = s.get(ReleaseRequestRow, rid)
    if req is None:
        raise NotFound("request_not_found")
    req.status = "released" if ok else "failed"
    req.result = result
    if ok:
        msg = s.get(MessageRow, req.message)
        if msg is not None:
            msg.status = "released"
            msg.updated_at = _now()
    audit.append(
        s, who.actor, "release.delivered" if ok else "release.failed", req.message,
        {"request": rid, **result},
    )


def reject(
    s: Session, rid: str, who: Principal, reason: str, cooldown: float = users.DEFAULT_COOLDOWN
) -> ReleaseRequestRow:
    req = _decidable(s, rid, who, cooldown)
    req.status = "rejected"
    req.decided_by = who.name
    req.decided_at = _now()
    req.decision_reason = reason.strip()[:MAX_REASON]
    audit.append(
        s, who.actor, "release.reject", req.message, {"request": rid, "reason": req.decision_reason}
    )
    return req
