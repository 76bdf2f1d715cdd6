from __future__ import annotations

import pytest

from gateway.errors import Conflict, Invalid, NotAllowed, NotFound
from gateway.store.repository import Store
from gateway.store.tokens import Principal
from tests.store.seed import add_message

OPERATOR = Principal(1, "tanaka", "operator")
APPROVER = Principal(2, "suzuki", "approver")
SAME_PERSON = Principal(3, "tanaka", "approver")  # the requester with a second token


def test_request_approve_finish(store: Store) -> None:
    mid = add_message(
        store, status="quarantined", rcpt_tos=("a@town.example.lg.jp", "b@town.example.lg.jp")
    )
    req = store.request_release(mid, "  取引先からの正式な見積書  ", OPERATOR)
    assert req.status == "pending" and req.reason == "取引先からの正式な見積書"
    with pytest.raises(NotAllowed, match="approver_is_requester"):
        store.approve_release(req.id, SAME_PERSON)
    approved, msg, data = store.approve_release(req.id, APPROVER, ["B@town.example.lg.jp"], "ok")
    assert approved.status == "approved" and approved.rcpt_tos == ["B@town.example.lg.jp"]
    assert data == store.blob(mid, "original") and msg.id == mid
    with pytest.raises(Conflict, match="request_approved"):
        store.approve_release(req.id, APPROVER)  # no second delivery while one is under way
    store.finish_release(
        req.id, APPROVER, approved.attempt, True, {"accepted": ["B@town.example.lg.jp"]}
    )
    assert store.status(mid) == "released"
    final = store.release_request(req.id)
    assert final is not None and final.status == "released" and final.decided_by == "suzuki"
    actions = [e.action for e in reversed(store.audit_entries())]
    assert actions == ["release.request", "release.approve", "release.delivered"]


def test_failed_delivery_can_be_approved_again(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    req = store.request_release(mid, "need it", OPERATOR)
    first, _, _ = store.approve_release(req.id, APPROVER)
    store.finish_release(req.id, APPROVER, first.attempt, False, {"error": "relay_temporary"})
    assert store.status(mid) == "quarantined"
    store.approve_release(req.id, APPROVER)


def test_refusals(store: Store) -> None:
    mid = add_message(store, status="quarantined")
    with pytest.raises(Invalid, match="reason_required"):
        store.request_release(mid, "   ", OPERATOR)
    with pytest.raises(NotFound):
        store.request_release("nope", "x", OPERATOR)
    busy = add_message(store, status="deferred")
    with pytest.raises(Conflict, match="message_in_progress"):
        store.request_release(busy, "x", OPERATOR)
    req = store.request_release(mid, "x", OPERATOR)
    with pytest.raises(Conflict, match="recipient_not_in_original"):
        store.approve_release(req.id, APPROVER, ["attacker@evil.example"])
    store.reject_release(req.id, APPROVER, "no")
    with pytest.raises(Conflict, match="request_rejected"):
        store.approve_release(req.id, APPROVER)
    with pytest.raises(NotFound):
        store.approve_release("nope", APPROVER)
    store.delete_message(mid, Principal(9, "root", "admin"))
    with pytest.raises(Conflict, match="original_deleted"):
        store.request_release(mid, "x", OPERATOR)


def test_listing_with_cursor(store: Store) -> None:
    made = []
    for i in range(5):  # one open request per message: five messages
        made.append(
            store.request_release(add_message(store, status="quarantined"), f"r{i}", OPERATOR).id
        )
    seen, cursor = [], ""
    while True:
        page = store.release_requests(status="pending", limit=2, cursor=cursor)
        seen += [r.id for r in page]
        if len(page) < 2:
            break
        cursor = page[-1].id
    assert sorted(seen) == sorted(made) and len(seen) == 5


def test_approval_stuck_by_a_crash_can_be_approved_again(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.store.models import ReleaseRequestRow

    mid = add_message(store, status="quarantined")
    req = store.request_release(mid, "need it", OPERATOR)
    store.approve_release(req.id, APPROVER)  # ... and the process dies before finish_release
    with pytest.raises(Conflict, match="request_approved"):
        store.approve_release(req.id, APPROVER)  # still possibly under way
    with store.db.write() as s:
        row = s.get(ReleaseRequestRow, req.id)
        assert row is not None
        row.decided_at = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(NotAllowed, match="approver_is_requester"):
        store.approve_release(req.id, SAME_PERSON)  # the two-person rule still holds
    again, _, data = store.approve_release(req.id, APPROVER)
    assert again.status == "approved" and data == store.blob(mid, "original")
    store.finish_release(req.id, APPROVER, again.attempt, True, {})
    assert store.status(mid) == "released"
