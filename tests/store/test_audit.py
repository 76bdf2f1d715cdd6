from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway.store.audit import GENESIS, chain_hash, entry_of
from gateway.store.repository import Store
from tests.store.tamper import tampering


def _fill(store: Store, n: int = 5) -> None:
    for i in range(n):
        store.audit("token:alice", "original.read", f"m{i}", {"n": i, "名前": "山田"})


def test_chain_links_every_entry(store: Store) -> None:
    _fill(store)
    rows = sorted(store.audit_entries(), key=lambda r: r.seq)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    prev = GENESIS
    for row in rows:
        assert row.prev_hash == prev
        assert row.hash == chain_hash(prev, entry_of(row))
        prev = row.hash
    report = store.verify_audit()
    assert report.ok and report.checked == 5


def test_empty_log_verifies(store: Store) -> None:
    assert store.verify_audit().ok


def test_database_refuses_update_and_delete(store: Store) -> None:
    _fill(store, 2)
    for stmt in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(stmt))
    assert store.verify_audit().ok


def test_edited_row_is_detected(store: Store) -> None:
    _fill(store)
    with tampering(store) as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'token:mallory' WHERE seq = 3"))
    report = store.verify_audit()
    assert not report.ok
    assert any("seq 3" in p and "edited" in p for p in report.problems)


def test_edited_row_with_recomputed_hash_breaks_the_next_link(store: Store) -> None:
    _fill(store)
    row = next(r for r in store.audit_entries() if r.seq == 2)
    entry = entry_of(row) | {"actor": "token:mallory"}
    forged = chain_hash(row.prev_hash, entry)
    with tampering(store) as conn:
        conn.execute(
            text("UPDATE audit_log SET actor = 'token:mallory', hash = :h WHERE seq = 2"),
            {"h": forged},
        )
    report = store.verify_audit()
    assert any(p.startswith("seq 3: prev_hash") for p in report.problems)


def test_deleted_row_is_detected(store: Store) -> None:
    _fill(store)
    with tampering(store) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    problems = store.verify_audit().problems
    assert any("seq 2" in p and "missing" in p for p in problems)


def test_rows_cut_off_the_end_are_detected(store: Store) -> None:
    _fill(store)
    with tampering(store) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    problems = store.verify_audit().problems
    assert any("chain head is seq 5" in p for p in problems)


def test_concurrent_writers_on_two_nodes_keep_one_linear_chain(
    store: Store, store_url: str
) -> None:
    # Two Store objects = two nodes with their own engines and connection pools.
    nodes = [Store(store_url), Store(store_url)]
    errors: list[BaseException] = []

    def writer(node: Store, k: int) -> None:
        try:
            for i in range(25):
                node.audit(f"node{k}", "test.append", f"{k}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(nodes[k % 2], k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = nodes[0].verify_audit()
    assert report.ok, report.problems
    assert report.checked == 100
    for node in nodes:
        node.close()
