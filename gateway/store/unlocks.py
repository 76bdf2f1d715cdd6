"""PPAP unlock bookkeeping, kept entirely in the audit log (no schema change).

Every attempt appends ``unlock.attempt`` ``{part}`` before the password is tried and
``unlock.result`` ``{part, attempt, outcome, ...}`` after; a refusal before trying appends
``unlock.refused``. The password itself is never passed to this module.

The rate limit and the "one unlock at a time per message" rule are decided inside the
same write transaction that appends the attempt, after locking the message row (``FOR
UPDATE``; SQLite: the transaction began IMMEDIATE), so two nodes cannot both see room for
one more try. An attempt without a result counts as a wrong password (a crash
mid-attempt must not give free tries) and, while younger than ``IN_FLIGHT_SECONDS``,
blocks another attempt on the same message (no double delivery).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound
from gateway.store import audit
from gateway.store.models import AuditRow, BlobRow, MessageRow
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus

ATTEMPT, RESULT, REFUSED = "unlock.attempt", "unlock.result", "unlock.refused"
DELIVERED = "delivered"
WRONG = "wrong_password"
# Longer than decrypting, scanning, sanitizing and a relay delivery can take together.
IN_FLIGHT_SECONDS = 15 * 60
# An attempt that has not reached the relay by then gives up (gateway/unlock.py): the
# in-flight block must outlive every delivery, or an attempt begun after it expired and
# the slow one would both deliver. The rest of the window is for the relay.
DELIVER_WITHIN_SECONDS = IN_FLIGHT_SECONDS / 2
_MAX_ROWS = 5000  # audit rows read per decision; a message never has that many attempts
BLOB_PREFIX = "u:"  # blobs.kind is 16 characters: "u:" + a part index of up to 14


@dataclass(frozen=True)
class Begun:
    attempt: int  # seq of the unlock.attempt entry; the result names it
    message: MessageRow
    original: bytes
    part: dict[str, Any]  # the stored report of the withheld part


class RateLimited(Conflict):
    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("unlock_rate_limited")
        self.retry_after = retry_after

    def body(self) -> dict[str, object]:
        return {"detail": self.reason, "retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _parts(parts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    stack = list(parts)
    while stack:
        p = stack.pop()
        yield p
        stack.extend(p.get("children") or [])


def find_part(msg: MessageRow, index: str) -> dict[str, Any]:
    for p in _parts(msg.parts or []):
        if p.get("index") == index:
            return p
    raise NotFound("part_not_found")


def _rows(s: Session, mugai_id: str, since: str) -> list[AuditRow]:
    stmt = (
        select(AuditRow)
        .where(
            AuditRow.target == mugai_id,
            AuditRow.action.in_((ATTEMPT, RESULT)),
            AuditRow.at >= since,  # ISO text of one format: orders as time does
        )
        .order_by(AuditRow.seq.desc())
        .limit(_MAX_ROWS)
    )
    return list(s.scalars(stmt))


def begin(
    s: Session,
    mugai_id: str,
    part: str,
    who: Principal,
    *,
    max_wrong: int,
    window: float,
    now: datetime | None = None,
) -> Begun:
    """Checks and reserves one attempt (audited); raises ``Refused`` subclasses."""
    # The message row is locked first (FOR UPDATE; SQLite: the transaction is IMMEDIATE) so a
    # parallel attempt waits here and then reads the attempt this one appends: on PostgreSQL
    # (READ COMMITTED) reading the audit rows before taking a lock would miss it.
    msg = s.get(MessageRow, mugai_id, with_for_update=True)
    now = now or datetime.now(UTC)
    if msg is None:
        raise NotFound("message_not_found")
    if msg.kind != "mail":
        raise Conflict("not_a_mail")
    if msg.status in (MessageStatus.PROCESSING, MessageStatus.DEFERRED):
        raise Conflict("message_in_progress")
    blob = s.get(BlobRow, (mugai_id, "original"))
    if msg.status == MessageStatus.DELETED or blob is None:
        raise Conflict("original_deleted")
    report = find_part(msg, part)
    if "encrypted" not in (report.get("reasons") or []):
        raise Conflict("part_not_encrypted")
    # The delivered copy is written with the delivered result (finish): final, however many
    # audit rows came after it.
    if s.get(BlobRow, (mugai_id, BLOB_PREFIX + part)) is not None:
        raise Conflict("already_unlocked")
    in_flight_since = _iso(now - timedelta(seconds=IN_FLIGHT_SECONDS))
    window_start = _iso(now - timedelta(seconds=window))
    rows = _rows(s, mugai_id, min(in_flight_since, window_start))
    if len(rows) >= _MAX_ROWS:
        # Attempts that do not count are not limited: so many that the bounded read may miss
        # a wrong one is refused (fail closed) until the window has passed.
        raise RateLimited(max(1, math.ceil(window)))
    results = {int(r.detail.get("attempt", 0)): r for r in rows if r.action == RESULT}
    if any(
        r.detail.get("part") == part and r.detail.get("outcome") == DELIVERED
        for r in results.values()
    ):
        raise Conflict("already_unlocked")
    wrong: list[str] = []
    for r in rows:
        if r.action != ATTEMPT:
            continue
        result = results.get(r.seq)
        if result is None and r.at >= in_flight_since:
            raise Conflict("unlock_in_progress")
        if r.at >= window_start and (result is None or result.detail.get("outcome") == WRONG):
            wrong.append(r.at)
    if len(wrong) >= max_wrong:
        oldest = datetime.fromisoformat(min(wrong))
        retry = math.ceil((oldest + timedelta(seconds=window) - now).total_seconds())
        raise RateLimited(max(1, retry))
    entry = audit.append(s, who.actor, ATTEMPT, mugai_id, {"part": part})
    return Begun(entry.seq, msg, blob.data, dict(report))


def refused(s: Session, mugai_id: str, part: str, who: Principal, reason: str) -> None:
    audit.append(s, who.actor, REFUSED, mugai_id, {"part": part, "outcome": reason})


def finish(
    s: Session,
    mugai_id: str,
    begun_attempt: int,
    part: str,
    who: Principal,
    outcome: str,
    detail: dict[str, Any],
    delivered: bytes | None,
) -> None:
    """The outcome (audited, with what was delivered); the delivered copy is kept."""
    entry = {**detail, "part": part, "attempt": begun_attempt, "outcome": outcome}
    audit.append(s, who.actor, RESULT, mugai_id, entry)
    if delivered is not None:
        kind = BLOB_PREFIX + part
        row = s.get(BlobRow, (mugai_id, kind))
        if row is None:
            s.add(BlobRow(message=mugai_id, kind=kind, data=delivered))
        else:
            row.data = delivered


def wrong_in_window(s: Session, mugai_id: str, window: float) -> int:
    """Wrong (or unfinished) attempts within the window, for "n tries left" messages."""
    window_start = _iso(datetime.now(UTC) - timedelta(seconds=window))
    rows = _rows(s, mugai_id, window_start)
    results = {int(r.detail.get("attempt", 0)): r for r in rows if r.action == RESULT}
    return sum(
        1
        for r in rows
        if r.action == ATTEMPT
        and r.at >= window_start
        and (r.seq not in results or results[r.seq].detail.get("outcome") == WRONG)
    )
