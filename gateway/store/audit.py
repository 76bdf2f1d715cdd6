"""Append-only audit log with a hash chain.

Each entry's hash is ``sha256(prev_hash || canonical_json(entry))`` where the entry is
``{seq, at, actor, action, target, detail}``; the first entry chains to 64 zeros. Editing a row
breaks its own hash, deleting one leaves a gap in ``seq`` or a ``prev_hash`` that no longer
matches, and cutting rows off the end disagrees with the ``audit_head`` row. Writers lock the
head row (``FOR UPDATE``; SQLite: the transaction began IMMEDIATE) so two nodes appending at
once still produce one linear chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.models import AuditHeadRow, AuditRow

GENESIS = "0" * 64
_MAX_PROBLEMS = 100


def canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(
        entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(entry)).hexdigest()


def entry_of(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": row.detail,
    }


def append(
    s: Session,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditRow:
    """Append one entry inside the caller's transaction (which must come from Database.write)."""
    head = s.execute(
        select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
    ).scalar_one()
    # Through JSON and back: what is hashed is exactly what the database will return.
    clean_detail = json.loads(canonical(dict(detail or {})))
    row = AuditRow(
        seq=head.seq + 1,
        at=datetime.now(UTC).isoformat(timespec="microseconds"),
        actor=actor[:128],
        action=action[:64],
        target=target[:128],
        detail=clean_detail,
        prev_hash=head.hash,
        hash="",
    )
    row.hash = chain_hash(head.hash, entry_of(row))
    s.add(row)
    head.seq = row.seq
    head.hash = row.hash
    s.flush()
    return row


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


def verify(s: Session, batch: int = 1000) -> VerifyReport:
    report = VerifyReport()
    prev_hash, expected_seq = GENESIS, 1
    last = 0
    while True:
        stmt = select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
        rows = list(s.scalars(stmt))
        if not rows:
            break
        for row in rows:
            report.checked += 1
            if row.seq != expected_seq:
                report.add(
                    f"seq {expected_seq}..{row.seq - 1}: missing (rows deleted)"
                    if row.seq > expected_seq
                    else f"seq {row.seq}: out of order"
                )
            if row.prev_hash != prev_hash:
                report.add(f"seq {row.seq}: prev_hash does not match the previous entry")
            if chain_hash(row.prev_hash, entry_of(row)) != row.hash:
                report.add(f"seq {row.seq}: hash mismatch (row edited)")
            prev_hash, expected_seq = row.hash, row.seq + 1
        last = rows[-1].seq
    head = s.get(AuditHeadRow, 1)
    if head is None:
        report.add("audit_head row missing")
    elif head.seq != last or head.hash != prev_hash:
        report.add(
            f"chain head is seq {head.seq} but the log ends at seq {last} "
            "(rows removed from the end, or the head was edited)"
        )
    return report
