"""Append-only audit log: a hash chain, MACed with a key outside the database, anchored outside.

Each entry's hash is ``sha256(prev_hash || canonical_json(entry))`` where the entry is
``{seq, at, actor, action, target, detail}``; the first entry chains to 64 zeros. Editing a row
breaks its own hash, deleting one leaves a gap in ``seq`` or a ``prev_hash`` that no longer
matches, and cutting rows off the end disagrees with the ``audit_head`` row. Writers lock the
head row (``FOR UPDATE``; SQLite: the transaction began IMMEDIATE) so two nodes appending at
once still produce one linear chain.

The hash alone is public: someone with write access to the database can drop the triggers,
delete a row and re-chain. So each entry also carries ``mac = HMAC(key, key_id|seq|prev_mac|
hash)`` with a key from a file (gateway/store/audit_keys.py) that the database never sees, and
after every commit the new head is appended to an anchor file outside the database: a
re-chained, truncated or older (restored) database no longer matches what was anchored.
Entries written before keys existed (``key_id`` '') are accepted only as a prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.audit_keys import Anchor, Keyring, anchored
from gateway.store.models import AuditHeadRow, AuditRow

GENESIS = "0" * 64
_MAX_PROBLEMS = 100
# Session.info keys: the seal used by append(), and the heads to anchor after the commit.
SEAL = "mugai_audit_seal"
PENDING = "mugai_audit_pending"


class AuditUnsealed(Exception):
    """The chain is keyed but this process has no key: refuse rather than write unMACed."""


@dataclass(frozen=True)
class Seal:
    keyring: Keyring
    anchor: Anchor | None


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
    seal: Seal | None = s.info.get(SEAL)
    if seal is not None:
        row.key_id = seal.keyring.current
        row.mac = seal.keyring.mac(row.key_id, row.seq, head.mac, row.hash)
    elif head.mac:
        raise AuditUnsealed("the audit chain is keyed but no audit key is loaded")
    else:
        row.key_id, row.mac = "", ""
    s.add(row)
    head.seq = row.seq
    head.hash = row.hash
    head.mac = row.mac
    s.flush()
    s.info.setdefault(PENDING, []).append((row.seq, row.hash, row.mac))
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


def verify(
    s: Session,
    batch: int = 1000,
    *,
    keyring: Keyring | None = None,
    anchor: Anchor | None = None,
) -> VerifyReport:
    """Hashes and links always; MACs when a keyring is given; the anchor files when given."""
    report = VerifyReport()
    prev_hash, prev_mac, expected_seq = GENESIS, "", 1
    last = 0
    keyed_seen = False
    anchor_problems: list[str] = []
    files = anchor.files() if anchor is not None else []
    pending = anchored(files, anchor_problems)
    waiting = next(pending, None)
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
            if keyring is not None:
                keyed_seen = _check_mac(report, keyring, row, prev_mac, keyed_seen)
            while waiting is not None and waiting.seq < row.seq:
                report.add(
                    f"seq {waiting.seq}: anchored ({waiting.where}) but not in the database "
                    "(rows deleted)"
                )
                waiting = next(pending, None)
            while waiting is not None and waiting.seq == row.seq:
                if waiting.hash != row.hash or waiting.mac != row.mac:
                    report.add(
                        f"seq {row.seq}: differs from the anchor ({waiting.where}): rewritten, "
                        "re-chained, or the database was restored from an older copy"
                    )
                waiting = next(pending, None)
            prev_hash, prev_mac, expected_seq = row.hash, row.mac, row.seq + 1
        last = rows[-1].seq
    if waiting is not None:
        report.add(
            f"seq {waiting.seq}: anchored ({waiting.where}) beyond the end of the log at seq "
            f"{last} (rows cut off, or the database was restored from an older copy)"
        )
        for _rest in pending:  # drain: the reader reports malformed lines as it goes
            pass
    for problem in anchor_problems:
        report.add(problem)
    if anchor is not None and keyed_seen and not files:
        report.add(f"anchor files missing in {anchor.directory} (deleted?)")
    head = s.get(AuditHeadRow, 1)
    if head is None:
        report.add("audit_head row missing")
    elif head.seq != last or head.hash != prev_hash or head.mac != prev_mac:
        report.add(
            f"chain head is seq {head.seq} but the log ends at seq {last} "
            "(rows removed from the end, or the head was edited)"
        )
    return report


def _check_mac(
    report: VerifyReport, keyring: Keyring, row: AuditRow, prev_mac: str, keyed_seen: bool
) -> bool:
    if not row.key_id:
        if keyed_seen or row.mac:
            report.add(f"seq {row.seq}: no MAC after MACed entries (MAC stripped, row forged)")
        elif keyring.unkeyed_until is not None and row.seq > keyring.unkeyed_until:
            report.add(
                f"seq {row.seq}: no MAC, but the key file was made at seq "
                f"{keyring.unkeyed_until} (MACs stripped)"
            )
        return keyed_seen
    if row.key_id not in keyring.keys:
        report.add(f"seq {row.seq}: signed with unknown key {row.key_id!r}")
        return True
    expected = keyring.mac(row.key_id, row.seq, prev_mac, row.hash)
    if not hmac.compare_digest(expected, row.mac):
        report.add(f"seq {row.seq}: MAC mismatch (rewritten or re-chained without the key)")
    return True
