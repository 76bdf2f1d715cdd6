"""Release state machine and policy, attacked at the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import Conflict, Invalid, NotAllowed
from gateway.model import ScanResult
from gateway.store.models import ReleaseRequestRow
from gateway.store.releases import Policy
from gateway.store.repository import Store
from gateway.store.tokens import Principal
from tests.store.seed import add_message

OPERATOR = Principal(1, "tanaka", "operator")
APPROVER = Principal(2, "suzuki", "approver")
ADMIN = Principal(3, "root", "admin")
EICAR = "Win.Test.EICAR_HDB-1"


def infected(store: Store) -> str:
    mid = add_message(store, status="quarantined", reason="virus_found")
    store.mark_quarantined(mid, "virus_found", EICAR, 1, ScanResult(clean=False, signature=EICAR))
    return mid


def deliver(store: Store, rid: str, who: Principal = APPROVER) -> None:
    req, _, _ = store.approve_release(rid, who)
    assert store.finish_release(rid, who, req.attempt, True, {"accepted": ["x"]})


def test_second_open_request_is_refused_with_the_open_ones_id(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    first = store.request_release(mid, "need it", OPERATOR)
    with pytest.raises(Conflict, match="release_request_open") as err:
        store.request_release(mid, "again", APPROVER)
    assert err.value.detail == first.id
    # Still refused while approved (delivery under way) and after a failed delivery.
    req, _, _ = store.approve_release(first.id, APPROVER)
    with pytest.raises(Conflict, match="release_request_open"):
        store.request_release(mid, "again", OPERATOR)
    store.finish_release(first.id, APPROVER, req.attempt, False, {"error": "relay_temporary"})
    with pytest.raises(Conflict, match="release_request_open"):
        store.request_release(mid, "again", OPERATOR)
    # A rejected request closes: a new one may be made.
    store.reject_release(first.id, APPROVER, "no")
    assert store.request_release(mid, "new facts", OPERATOR).status == "pending"


def test_released_message_cannot_be_released_again_until_an_admin_reopens(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    req = store.request_release(mid, "need it", OPERATOR)
    deliver(store, req.id)
    with pytest.raises(Conflict, match="already_released") as err:
        store.request_release(mid, "once more", OPERATOR)
    assert err.value.detail == req.id
    with pytest.raises(NotAllowed, match="admin_required"):
        store.reopen_release(mid, APPROVER, "lost it")
    with pytest.raises(Invalid, match="reason_required"):
        store.reopen_release(mid, ADMIN, "  ")
    reopened = store.reopen_release(mid, ADMIN, "受信者が誤って削除")
    assert reopened.reopened_by == "root" and reopened.status == "released"
    with pytest.raises(Conflict, match="not_released"):
        store.reopen_release(mid, ADMIN, "twice")
    again = store.request_release(mid, "once more", OPERATOR)
    deliver(store, again.id)
    actions = [e.action for e in reversed(store.audit_entries(target=mid))]
    assert actions.count("release.delivered") == 2 and "release.reopen" in actions
    assert store.verify_audit().ok


def test_racing_requests_leave_exactly_one(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    results: list[str] = []

    def ask(n: int) -> None:
        try:
            results.append(store.request_release(mid, f"r{n}", OPERATOR).id)
        except Conflict as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("release_request_open") == 5
    assert len(store.release_requests(message=mid)) == 1


def test_the_index_refuses_a_second_open_row_even_past_the_check(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    store.request_release(mid, "first", OPERATOR)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), store.db.write() as s:
        s.add(
            ReleaseRequestRow(
                id="forged", message=mid, status="pending", reason="x", requested_by="x",
                requested_at=datetime.now(UTC), rcpt_tos=[], result={},
            )
        )  # fmt: skip


def test_infected_original_is_refused_by_default(store: Store) -> None:
    mid = infected(store)
    with pytest.raises(NotAllowed, match="infected_release_forbidden"):
        store.request_release(mid, "the sender insists", OPERATOR, confirm_signature=EICAR)
    assert store.release_requests(message=mid) == []


def test_infected_original_needs_the_signature_when_allowed(store_url: str) -> None:
    store = Store(store_url, policy=Policy(allow_infected=True))
    store.create_schema()
    try:
        mid = infected(store)
        for wrong in ("", "yes", EICAR.lower()):
            with pytest.raises(Invalid, match="confirm_signature_mismatch"):
                store.request_release(mid, "evidence", OPERATOR, confirm_signature=wrong)
        req = store.request_release(mid, "evidence", OPERATOR, confirm_signature=EICAR)
        assert req.confirmed_signature == EICAR and req.exception
        with pytest.raises(Invalid, match="confirm_signature_mismatch"):
            store.approve_release(req.id, APPROVER)  # the approver must name it too
        store.approve_release(req.id, APPROVER, confirm_signature=EICAR)
        entry = store.audit_entries(action="release.approve", target=mid)[0]
        assert entry.detail["infected"] == EICAR and entry.detail["exception"] is True
    finally:
        store.close()


def test_policy_tightened_after_the_request_still_refuses_approval(store_url: str) -> None:
    loose = Store(store_url, policy=Policy(allow_infected=True))
    loose.create_schema()
    mid = infected(loose)
    req = loose.request_release(mid, "evidence", OPERATOR, confirm_signature=EICAR)
    loose.close()
    strict = Store(store_url)
    try:
        with pytest.raises(NotAllowed, match="infected_release_forbidden"):
            strict.approve_release(req.id, APPROVER, confirm_signature=EICAR)
    finally:
        strict.close()


def test_original_release_is_an_exception_with_a_category(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    with pytest.raises(Invalid, match="exception_category_required"):
        store.request_release(mid, "x", OPERATOR, category="because")
    with pytest.raises(Invalid, match="unknown_release_kind"):
        store.request_release(mid, "x", OPERATOR, kind="everything")
    req = store.request_release(mid, "見積書の原本が必要", OPERATOR, category="business_required")
    assert req.exception and req.category == "business_required" and req.kind == "original"
    entry = store.audit_entries(action="release.request", target=mid)[0]
    assert entry.detail["exception"] is True and entry.detail["category"] == "business_required"


def test_sanitized_redelivery_is_no_exception_and_needs_a_sanitized_copy(store: Store) -> None:
    quarantined = add_message(store, status="quarantined")
    with pytest.raises(Conflict, match="no_sanitized_copy"):
        store.request_release(quarantined, "x", OPERATOR, kind="sanitized")
    delivered = add_message(store, status="delivered")
    req = store.request_release(delivered, "再送", OPERATOR, kind="sanitized", category="legal")
    assert not req.exception and req.category == ""
    _, _, data = store.approve_release(req.id, APPROVER)
    assert data == store.blob(delivered, "sanitized") != store.blob(delivered, "original")


def test_crash_between_approve_and_relay_answer_records_one_delivery(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    req = store.request_release(mid, "need it", OPERATOR)
    dead, _, _ = store.approve_release(req.id, APPROVER)  # ... the process dies here
    with pytest.raises(Conflict, match="request_approved"):
        store.approve_release(req.id, APPROVER)  # maybe still under way: no second send
    with store.db.write() as s:
        row = s.get(ReleaseRequestRow, req.id)
        assert row is not None
        row.decided_at = datetime.now(UTC) - timedelta(hours=1)
    retry, _, _ = store.approve_release(req.id, APPROVER)
    assert retry.attempt != dead.attempt
    # The dead attempt's answer turns up late (a slow relay, not a crash): never recorded.
    assert not store.finish_release(req.id, APPROVER, dead.attempt, True, {"accepted": ["x"]})
    assert store.status(mid) == "quarantined"
    assert store.finish_release(req.id, APPROVER, retry.attempt, True, {"accepted": ["x"]})
    assert not store.finish_release(req.id, APPROVER, retry.attempt, True, {"accepted": ["x"]})
    actions = [e.action for e in store.audit_entries(target=mid)]
    assert actions.count("release.delivered") == 1 and actions.count("release.late_result") == 2
    with pytest.raises(Conflict, match="request_released"):
        store.approve_release(req.id, APPROVER)


def test_reject_of_an_interrupted_approval_voids_its_late_answer(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    req = store.request_release(mid, "need it", OPERATOR)
    dead, _, _ = store.approve_release(req.id, APPROVER)
    with store.db.write() as s:
        row = s.get(ReleaseRequestRow, req.id)
        assert row is not None
        row.decided_at = datetime.now(UTC) - timedelta(hours=1)
    store.reject_release(req.id, APPROVER, "sender withdrew")
    assert not store.finish_release(req.id, APPROVER, dead.attempt, True, {})
    assert store.status(mid) == "quarantined"
