"""The audit log against someone with write access to the database (SQLite and PostgreSQL).

Each attack of issue 12 is carried out for real (triggers dropped, rows deleted or edited, the
public hash chain recomputed, the head row fixed up, an older database copy put back) and must
be detected with the broken entry named.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store.audit import GENESIS, AuditUnsealed, chain_hash, entry_of
from gateway.store.audit_keys import (
    AuditKeyError,
    create_key_file,
    load_keyring,
    rotate_key_file,
)
from gateway.store.models import AuditRow
from gateway.store.repository import Store
from tests.store.tamper import tampering


@pytest.fixture
def sealed(store: Store, tmp_path: Path) -> Iterator[Store]:
    store.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=True)
    yield store


def _fill(store: Store, n: int = 6) -> None:
    for i in range(n):
        action = "original.read" if i == 2 else "release.request"
        store.audit("token:alice", action, f"m{i}", {"n": i, "名前": "山田"})


def _rechain(store: Store) -> None:
    """What an intruder does after an edit or a deletion: renumber and recompute the public
    hash chain, then fix the head row, so the plain hash check passes again."""
    with tampering(store) as conn:
        rows = conn.execute(text("SELECT seq FROM audit_log ORDER BY seq")).scalars().all()
        for new_seq, old_seq in enumerate(rows, 1):
            conn.execute(text("UPDATE audit_log SET seq = :n WHERE seq = :o"),
                         {"n": new_seq, "o": old_seq})  # fmt: skip
    with store.db.read() as s:
        ordered = list(s.query(AuditRow).order_by(AuditRow.seq))
    prev = GENESIS
    with tampering(store) as conn:
        for row in ordered:
            new_hash = chain_hash(prev, entry_of(row))
            conn.execute(text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"p": prev, "h": new_hash, "s": row.seq})  # fmt: skip
            prev = new_hash
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
                     {"s": len(ordered), "h": prev})  # fmt: skip


def _plain_verify_passes(store: Store) -> bool:
    """The old, unkeyed check: shows the attack really defeats the public hash chain."""
    from gateway.store import audit

    with store.db.read() as s:
        report = audit.verify(s)
    return report.ok or all("chain head" in p for p in report.problems)


def test_intact_chain_is_macd_and_anchored(
    sealed: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fill(sealed)
    caplog.clear()
    sealed.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=False)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # in step: no alarm
    report = sealed.verify_audit()
    assert report.ok and report.checked == 6, report.problems
    rows = sealed.audit_entries()
    assert all(r.mac and r.key_id for r in rows)
    (anchor,) = list((tmp_path / "anchor").glob("anchor-*.log"))
    assert len(anchor.read_text().splitlines()) == 6
    key = tmp_path / "keys" / "audit.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    assert key.read_bytes() not in b"".join(str(r.detail).encode() for r in rows)


def test_deleted_entry_rechained_is_detected(sealed: Store) -> None:
    _fill(sealed)
    with tampering(sealed) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE action = 'original.read'"))
    _rechain(sealed)
    assert _plain_verify_passes(sealed)  # the attack works against the hash alone
    report = sealed.verify_audit()
    assert not report.ok
    assert any(p.startswith("seq 3: MAC mismatch") for p in report.problems), report.problems
    assert any("seq 3: differs from the anchor" in p for p in report.problems)


def test_edited_entry_rechained_is_detected(sealed: Store) -> None:
    _fill(sealed)
    with tampering(sealed) as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'token:bob' WHERE seq = 4"))
    _rechain(sealed)
    report = sealed.verify_audit()
    assert any(p.startswith("seq 4: MAC mismatch") for p in report.problems), report.problems


def test_truncated_log_with_fixed_head_is_detected(sealed: Store) -> None:
    _fill(sealed)
    with tampering(sealed) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > 4"))
        row = conn.execute(text("SELECT hash, mac FROM audit_log WHERE seq = 4")).one()
        conn.execute(text("UPDATE audit_head SET seq = 4, hash = :h, mac = :m WHERE id = 1"),
                     {"h": row.hash, "m": row.mac})  # fmt: skip
    assert _plain_verify_passes(sealed)
    report = sealed.verify_audit()
    assert any("seq 5: anchored" in p and "beyond the end" in p for p in report.problems)


def test_stripped_macs_are_detected(sealed: Store) -> None:
    _fill(sealed)
    with tampering(sealed) as conn:
        conn.execute(text("UPDATE audit_log SET mac = '', key_id = ''"))
        conn.execute(text("UPDATE audit_head SET mac = '' WHERE id = 1"))
    report = sealed.verify_audit()
    assert any("seq 1: differs from the anchor" in p for p in report.problems)


def test_forged_with_another_key_is_detected(sealed: Store, tmp_path: Path) -> None:
    _fill(sealed, 3)
    forged = tmp_path / "mine.key"
    create_key_file(forged)
    mine = load_keyring(forged)
    real_id = load_keyring(tmp_path / "keys" / "audit.key").current
    with sealed.db.read() as s:
        row2 = s.get(AuditRow, 2)
        assert row2 is not None
        row1_mac = s.get(AuditRow, 1).mac  # type: ignore[union-attr]
    # The intruder's own key, under its own id ...
    fake = mine.mac(mine.current, 2, row1_mac, row2.hash)
    with tampering(sealed) as conn:
        conn.execute(text("UPDATE audit_log SET mac = :m, key_id = :k WHERE seq = 2"),
                     {"m": fake, "k": mine.current})  # fmt: skip
    report = sealed.verify_audit()
    assert any(p.startswith("seq 2: signed with unknown key") for p in report.problems)
    # ... or under the real key's id, with the intruder's secret.
    msg = f"{real_id}|2|{row1_mac}|{row2.hash}".encode()
    fake2 = hmac.new(mine.keys[mine.current], msg, hashlib.sha256).hexdigest()
    with tampering(sealed) as conn:
        conn.execute(text("UPDATE audit_log SET mac = :m, key_id = :k WHERE seq = 2"),
                     {"m": fake2, "k": real_id})  # fmt: skip
    report = sealed.verify_audit()
    assert any(p.startswith("seq 2: MAC mismatch") for p in report.problems)


def test_deleted_anchor_file_is_detected(sealed: Store, tmp_path: Path) -> None:
    _fill(sealed, 2)
    for f in (tmp_path / "anchor").glob("anchor-*.log"):
        f.unlink()
    report = sealed.verify_audit()
    assert any("anchor files missing" in p for p in report.problems)


def test_edited_anchor_line_is_reported(sealed: Store, tmp_path: Path) -> None:
    _fill(sealed, 3)
    (anchor,) = list((tmp_path / "anchor").glob("anchor-*.log"))
    lines = anchor.read_text().splitlines()
    lines[1] = "2 " + "0" * 64 + " " + lines[1].split()[2]
    anchor.write_text("\n".join(lines + ["garbage"]) + "\n")
    problems = sealed.verify_audit().problems
    assert any("seq 2: differs from the anchor" in p for p in problems)
    assert any("malformed line" in p for p in problems)


def test_torn_last_anchor_line_is_no_alarm(sealed: Store, tmp_path: Path) -> None:
    _fill(sealed, 2)
    (anchor,) = list((tmp_path / "anchor").glob("anchor-*.log"))
    with open(anchor, "a") as fh:
        fh.write("3 abc")  # a crash in the middle of a write
    assert sealed.verify_audit().ok


def test_unsealed_writer_cannot_append_to_a_keyed_chain(sealed: Store, store_url: str) -> None:
    _fill(sealed, 1)
    other = Store(store_url)
    try:
        with pytest.raises(AuditUnsealed):
            other.audit("token:x", "original.read", "m")
    finally:
        other.close()


def test_key_file_rules(store: Store, tmp_path: Path) -> None:
    key = tmp_path / "k" / "audit.key"
    create_key_file(key)
    with pytest.raises(FileExistsError):
        create_key_file(key)
    os.chmod(key, 0o644)
    with pytest.raises(AuditKeyError, match="readable by others"):
        load_keyring(key)
    os.chmod(key, 0o600)
    key.write_text("not a key\n")
    with pytest.raises(AuditKeyError, match="malformed"):
        load_keyring(key)
    link = tmp_path / "link.key"
    link.symlink_to(key)
    with pytest.raises(AuditKeyError):
        load_keyring(link)


def test_missing_key_for_a_keyed_chain_is_refused(sealed: Store, tmp_path: Path) -> None:
    _fill(sealed, 1)
    key = tmp_path / "keys" / "audit.key"
    key.unlink()
    with pytest.raises(AuditKeyError, match="restore the key file"):
        sealed.seal_audit(key, tmp_path / "anchor", create=True)
    assert not key.exists()  # no new key was made that could never verify the old entries


def test_rotation_keeps_old_entries_verifiable(sealed: Store, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit.key"
    _fill(sealed, 2)
    first = load_keyring(key).current
    second = rotate_key_file(key)
    sealed.seal_audit(key, tmp_path / "anchor", create=False)
    _fill(sealed, 2)
    assert {r.key_id for r in sealed.audit_entries()} == {first, second}
    assert sealed.verify_audit().ok
    # Dropping the old key from the file makes its entries unverifiable: reported.
    key.write_text(key.read_text().splitlines()[1] + "\n")
    sealed.seal_audit(key, tmp_path / "anchor", create=False)
    problems = sealed.verify_audit().problems
    assert any(p.startswith("seq 1: signed with unknown key") for p in problems)


def test_unkeyed_prefix_from_before_the_upgrade_is_accepted(store: Store, tmp_path: Path) -> None:
    _fill(store, 2)  # written before any key existed
    store.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=True)
    _fill(store, 2)
    assert store.verify_audit().ok
    with tampering(store) as conn:  # an unkeyed row after keyed ones: forged
        conn.execute(text("UPDATE audit_log SET mac = '', key_id = '' WHERE seq = 4"))
        conn.execute(text("UPDATE audit_head SET mac = '' WHERE id = 1"))
    assert any(p.startswith("seq 4: no MAC") for p in store.verify_audit().problems)


def test_older_database_copy_restored_is_detected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "mugai.db"
    store = Store(f"sqlite:///{db}")
    store.create_schema()
    store.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=True)
    _fill(store, 3)
    store.close()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", tmp_path / f"backup{suffix}")
    store = Store(f"sqlite:///{db}")
    store.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=False)
    _fill(store, 3)  # e.g. original.read entries someone wants gone
    store.close()
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{db}{suffix}")
        target.unlink(missing_ok=True)
        if (tmp_path / f"backup{suffix}").exists():
            shutil.copy(tmp_path / f"backup{suffix}", target)
    store = Store(f"sqlite:///{db}")
    try:
        caplog.clear()
        store.seal_audit(tmp_path / "keys" / "audit.key", tmp_path / "anchor", create=False)
        # Said at start already, not only by the next verify.
        assert any("does not contain anchored entry seq=6" in r.message for r in caplog.records)
        assert _plain_verify_passes(store)
        problems = store.verify_audit().problems
        assert any("seq 4: anchored" in p and "older copy" in p for p in problems), problems
        # The gateway keeps running on the old copy: seq 4 is written again, differently.
        _fill(store, 1)
        problems = store.verify_audit().problems
        assert any("seq 4: differs from the anchor" in p for p in problems), problems
        assert any("went back" in p for p in problems), problems
    finally:
        store.close()


def test_anchor_lines_are_copied_to_syslog(store: Store, tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "log.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(path)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        for address, sock in ((path, unix), (f"127.0.0.1:{udp.getsockname()[1]}", udp)):
            store.seal_audit(tmp_path / "k" / "audit.key", tmp_path / "anchor", create=True,
                             syslog=address)  # fmt: skip
            sock.settimeout(30)
            seq = store.audit("token:alice", "original.read", "m1")
            got = sock.recv(4096).decode()
            row = store.audit_entries()[0]
            assert got.startswith("<37>mugai-audit[") and f"]: {seq} {row.hash} {row.mac}" in got
        # Syslog gone: the entry and its anchor line are still written (the copy is extra).
        unix.close()
        os.unlink(path)
        store.seal_audit(tmp_path / "k" / "audit.key", tmp_path / "anchor", create=True,
                         syslog=path)  # fmt: skip
        store.audit("token:alice", "original.read", "m2")
        assert store.verify_audit().ok
    finally:
        unix.close()
        udp.close()


def test_syslog_setting_is_validated() -> None:
    from pydantic import ValidationError

    from gateway.settings import load_settings

    for good in ("", "/dev/log", "loghost.example.lg.jp:514", "[::1]:514"):
        assert load_settings(None, audit={"syslog": good}).audit.syslog == good
    for bad in ("loghost", "a b:514", "host:port", "relative/path"):
        with pytest.raises(ValidationError):
            load_settings(None, audit={"syslog": bad})


@pytest.mark.parametrize("anchor_fate", ["deleted", "emptied"])
def test_all_macs_stripped_and_the_anchor_removed_is_detected(
    sealed: Store, tmp_path: Path, anchor_fate: str
) -> None:
    # Database and anchor directory writable, the key not: delete an entry, strip every MAC
    # (then the whole chain looks like entries from before the upgrade), re-chain, and remove
    # the anchor lines. Entries after the key file was made are MACed: detected, also after
    # the gateway appended (and MACed, and anchored) new entries on top.
    _fill(sealed, 4)
    with tampering(sealed) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE action = 'original.read'"))
        conn.execute(text("UPDATE audit_log SET mac = '', key_id = ''"))
    _rechain(sealed)
    with tampering(sealed) as conn:
        conn.execute(text("UPDATE audit_head SET mac = '' WHERE id = 1"))
    for f in (tmp_path / "anchor").glob("anchor-*.log"):
        if anchor_fate == "deleted":
            f.unlink()
        else:
            f.write_bytes(b"")
    assert _plain_verify_passes(sealed)
    problems = sealed.verify_audit().problems
    assert any(p.startswith("seq 1: no MAC") for p in problems), problems
    sealed.audit("token:alice", "release.request", "m9")
    problems = sealed.verify_audit().problems
    assert any(p.startswith("seq 1: no MAC") for p in problems), problems
