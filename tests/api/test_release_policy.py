"""Release state machine and policy through the API: every 409 / 403 / 422, one delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from gateway.api.release_flow import approve_and_send
from gateway.model import ScanResult
from gateway.relay import DeliveryResult
from gateway.store.models import ReleaseRequestRow
from gateway.store.releases import Policy
from tests.api.conftest import Api

EICAR = "Win.Test.EICAR_HDB-1"
BODY = {"reason": "取引先の正式な見積書です", "category": "business_required"}


async def _request(api: Api, mid: str, body: dict[str, str] | None = None) -> str:
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=body or BODY)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _infected(api: Api, seed: Callable[..., str]) -> str:
    mid = seed(status="quarantined", reason="virus_found")
    api.gw.store.mark_quarantined(mid, "virus_found", EICAR, 1, ScanResult(False, EICAR))
    return mid


async def test_second_request_is_409_with_the_open_requests_id(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "approver", json=BODY)
    assert r.status_code == 409
    assert r.json() == {"detail": "release_request_open", "request": rid}


async def test_released_message_409_until_admin_reopens(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 200 and len(api.sink.messages) == 1
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 409 and r.json()["detail"] == "request_released"
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=BODY)
    assert r.status_code == 409 and r.json() == {"detail": "already_released", "request": rid}
    for who in ("operator", "approver", "auditor"):
        r = await api.post(f"/api/v1/messages/{mid}/release-reopen", who, json={"reason": "x"})
        assert r.status_code == 403, who
    r = await api.post(f"/api/v1/messages/{mid}/release-reopen", "admin", json={"reason": " "})
    assert r.status_code == 422
    r = await api.post(
        f"/api/v1/messages/{mid}/release-reopen", "admin", json={"reason": "受信者が誤削除"}
    )
    assert r.status_code == 200 and r.json()["reopened_by"] == "admin"
    r = await api.post(f"/api/v1/messages/{mid}/release-reopen", "admin", json={"reason": "x"})
    assert r.status_code == 409 and r.json()["detail"] == "not_released"
    rid2 = await _request(api, mid)
    assert (await api.post(f"/api/v1/release-requests/{rid2}/approve", "approver")).is_success
    assert len(api.sink.messages) == 2
    log = (await api.get("/api/v1/audit", "auditor", params={"action": "release.reopen"})).json()
    assert log["items"][0]["detail"]["reason"] == "受信者が誤削除"


async def test_exception_category_is_checked_and_defaults_to_exception(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined")
    for body in ({"reason": "x", "category": "whim"},
                 {"reason": "x", "kind": "both", "category": "other"}):  # fmt: skip
        r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=body)
        assert r.status_code == 422, body
    # DESIGN.md §4.5: an API client may leave the category out; it is still an exception.
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json={"reason": "x"})
    assert r.status_code == 201, r.text
    assert r.json()["exception"] is True and r.json()["category"] == "exception"
    log = (await api.get("/api/v1/audit", "auditor", params={"target": mid})).json()
    assert log["items"][0]["detail"]["exception"] is True
    assert log["items"][0]["detail"]["category"] == "exception"
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    r = await api.get(f"/api/v1/release-requests/{rid}", "viewer")
    assert r.json()["exception"] is True and r.json()["category"] == "business_required"
    log = (await api.get("/api/v1/audit", "auditor", params={"target": mid})).json()
    assert log["items"][0]["detail"]["exception"] is True


async def test_infected_original_is_403_by_default(api: Api, seed: Callable[..., str]) -> None:
    mid = _infected(api, seed)
    body = {**BODY, "confirm_signature": EICAR}
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=body)
    assert r.status_code == 403 and r.json()["detail"] == "infected_release_forbidden"
    assert api.sink.messages == []


async def test_infected_original_with_allow_infected_needs_the_signature(
    api: Api, seed: Callable[..., str]
) -> None:
    api.gw.store.policy = Policy(allow_infected=True)
    mid = _infected(api, seed)
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=BODY)
    assert r.status_code == 422 and r.json()["detail"] == "confirm_signature_mismatch"
    # DESIGN.md §4.5's field name; `confirm_signature` (below) is accepted as well.
    rid = await _request(api, mid, {**BODY, "confirm_infected": EICAR})
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 422 and api.sink.messages == []
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve", "approver", json={"confirm_signature": EICAR}
    )
    assert r.status_code == 200 and len(api.sink.messages) == 1


class _Hanging:
    """Failure injection: a relay that never answers (the process dies while waiting)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_crash_between_approve_and_relay_answer_delivers_once(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    store = api.gw.store
    approver = store.authenticate(api.tokens["approver"])
    assert approver is not None
    hanging = _Hanging()
    task = asyncio.create_task(approve_and_send(store, hanging, api.gw.scanner, rid, approver))  # type: ignore[arg-type]
    await hanging.started.wait()
    task.cancel()  # the process dies: no relay answer, no finish
    dead = store.release_request(rid)
    assert dead is not None and dead.status == "approved"
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 409 and r.json()["detail"] == "request_approved"
    with store.db.write() as s:  # the stale window passes
        row = s.get(ReleaseRequestRow, rid)
        assert row is not None
        row.decided_at = datetime.now(UTC) - timedelta(hours=1)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert not store.finish_release(rid, approver, dead.attempt, True, {"accepted": ["late"]})
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 409
    assert len(api.sink.messages) == 1
    log = (await api.get("/api/v1/audit", "auditor", params={"target": mid})).json()
    actions = [e["action"] for e in log["items"]]
    assert actions.count("release.delivered") == 1 and "release.late_result" in actions
    assert store.verify_audit().ok
