"""Unlock bookkeeping in the audit log (gateway/store/unlocks.py) on SQLite and PostgreSQL:
a crashed attempt blocks for a while and then counts as a wrong password, the window
slides, refusals are audited, and the rate limit holds across Store instances (nodes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import Conflict, NotFound
from gateway.model import Action, MessageReport, PartReport, ScanResult
from gateway.store import unlocks
from gateway.store.repository import Store
from gateway.store.tokens import Principal
from gateway.store.unlocks import IN_FLIGHT_SECONDS, RateLimited, begin
from tests.store.backends import pg_database, store, store_url  # noqa: F401 - fixtures
from tests.store.seed import add_message

WHO = Principal(1, "tanaka", "operator")


def ppap_message(store: Store) -> str:  # noqa: F811
    mid = add_message(store, status="delivered")
    part = PartReport("1.2", "見積書.zip", "application/zip", "zip", Action.REMOVED,
                      ("encrypted",), 4000)  # fmt: skip
    store.record_report(mid, MessageReport(parts=[part], tokens=["DEL_ATTACH"], subject="s",
                        message_id="<m1@example.com>", header_from="a@example.com",
                        scan=ScanResult(clean=True), timings={}))  # fmt: skip
    return mid


def test_a_crashed_attempt_blocks_then_counts_as_wrong(store: Store) -> None:  # noqa: F811
    mid = ppap_message(store)
    now = datetime.now(UTC)
    with store.db.write() as s:
        begin(s, mid, "1.2", WHO, max_wrong=2, window=3600, now=now)  # never finished
    with pytest.raises(Conflict, match="unlock_in_progress"), store.db.write() as s:
        begin(s, mid, "1.2", WHO, max_wrong=2, window=3600, now=now + timedelta(seconds=60))
    later = now + timedelta(seconds=IN_FLIGHT_SECONDS + 1)
    with store.db.write() as s:  # stale now: no longer blocks, but it was one wrong try
        second = begin(s, mid, "1.2", WHO, max_wrong=2, window=3600, now=later)
    store.finish_unlock(mid, second.attempt, "1.2", WHO, "wrong_password", {})
    with pytest.raises(RateLimited) as caught, store.db.write() as s:
        begin(s, mid, "1.2", WHO, max_wrong=2, window=3600, now=later)
    assert 0 < caught.value.retry_after <= 3600
    with store.db.write() as s:  # the window slid past both
        begin(s, mid, "1.2", WHO, max_wrong=2, window=3600, now=later + timedelta(hours=1))


def test_rate_limit_holds_across_nodes(store: Store, store_url: str) -> None:  # noqa: F811
    mid = ppap_message(store)
    other = Store(store_url)  # a second node on the same database
    try:
        for node in (store, other, store):
            b = node.begin_unlock(mid, "1.2", WHO, max_wrong=3, window=900)
            node.finish_unlock(mid, b.attempt, "1.2", WHO, "wrong_password", {})
        with pytest.raises(RateLimited):
            other.begin_unlock(mid, "1.2", WHO, max_wrong=3, window=900)
        assert other.unlock_wrong_count(mid, 900) == 3
    finally:
        other.close()


def test_other_outcomes_do_not_count_and_delivered_is_final(store: Store) -> None:  # noqa: F811
    mid = ppap_message(store)
    for outcome in ("clamd_unavailable", "relay_temporary", "virus_found"):
        b = store.begin_unlock(mid, "1.2", WHO, max_wrong=1, window=900)
        store.finish_unlock(mid, b.attempt, "1.2", WHO, outcome, {})
    b = store.begin_unlock(mid, "1.2", WHO, max_wrong=1, window=900)
    store.finish_unlock(mid, b.attempt, "1.2", WHO, "delivered", {}, b"delivered copy")
    with pytest.raises(Conflict, match="already_unlocked"):
        store.begin_unlock(mid, "1.2", WHO, max_wrong=1, window=900)
    assert store.blob(mid, "u:1.2") == b"delivered copy"


def test_refusals_before_trying(store: Store) -> None:  # noqa: F811
    mid = ppap_message(store)
    with pytest.raises(NotFound, match="part_not_found"):
        store.begin_unlock(mid, "9", WHO, max_wrong=3, window=900)
    with pytest.raises(NotFound, match="message_not_found"):
        store.begin_unlock("nope", "1.2", WHO, max_wrong=3, window=900)
    plain = add_message(store, status="delivered")  # its part is macros_removed, not encrypted
    with pytest.raises(Conflict, match="part_not_encrypted"):
        store.begin_unlock(plain, "1", WHO, max_wrong=3, window=900)
    store.delete_message(mid, Principal(2, "admin", "admin"))
    with pytest.raises(Conflict, match="original_deleted"):
        store.begin_unlock(mid, "1.2", WHO, max_wrong=3, window=900)


def _two_ppap_parts(store: Store) -> str:  # noqa: F811
    mid = add_message(store, status="delivered")
    parts = [
        PartReport("1.2", "見積書.zip", "application/zip", "zip", Action.REMOVED,
                   ("encrypted",), 4000),
        PartReport("1.3", "別紙.zip", "application/zip", "zip", Action.REMOVED,
                   ("encrypted",), 4000),
    ]  # fmt: skip
    store.record_report(mid, MessageReport(parts=parts, tokens=["DEL_ATTACH"], subject="s",
                        message_id="<m2@example.com>", header_from="a@example.com",
                        scan=ScanResult(clean=True), timings={}))  # fmt: skip
    return mid


def _cheap_attempts_until_refused(store: Store, mid: str) -> None:  # noqa: F811
    for _ in range(20):  # more rows than the (shrunk) bounded read
        try:
            b = store.begin_unlock(mid, "1.3", WHO, max_wrong=99, window=900)
        except RateLimited:
            return  # fail closed once the read could miss something
        store.finish_unlock(mid, b.attempt, "1.3", WHO, "part_not_found", {})


def test_many_cheap_attempts_do_not_push_the_record_out_of_sight(
    store: Store,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Attempts whose outcome does not count (a part that fails before its password is
    # tried) are not rate-limited: enough of them must not hide earlier wrong passwords or
    # the delivery from the decision, which reads a bounded number of audit rows.
    monkeypatch.setattr(unlocks, "_MAX_ROWS", 10)
    mid = _two_ppap_parts(store)
    for _ in range(2):
        b = store.begin_unlock(mid, "1.2", WHO, max_wrong=2, window=900)
        store.finish_unlock(mid, b.attempt, "1.2", WHO, "wrong_password", {})
    _cheap_attempts_until_refused(store, mid)
    with pytest.raises(RateLimited):
        store.begin_unlock(mid, "1.2", WHO, max_wrong=2, window=900)

    delivered = _two_ppap_parts(store)
    b = store.begin_unlock(delivered, "1.2", WHO, max_wrong=2, window=900)
    store.finish_unlock(delivered, b.attempt, "1.2", WHO, "delivered", {}, b"copy")
    _cheap_attempts_until_refused(store, delivered)
    with pytest.raises(Conflict, match="already_unlocked"):
        store.begin_unlock(delivered, "1.2", WHO, max_wrong=99, window=900)
