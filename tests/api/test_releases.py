from __future__ import annotations

from collections.abc import Callable

from tests.api.conftest import Api
from tests.store.seed import raw_mail

RCPTS = ("a@town.example.lg.jp", "b@town.example.lg.jp")


async def _request(api: Api, mid: str, who: str = "operator") -> str:
    r = await api.post(
        f"/api/v1/messages/{mid}/release-requests",
        who,
        json={"reason": "取引先の正式な見積書です", "category": "business_required"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending" and r.json()["requested_by"] == who
    return str(r.json()["id"])


async def test_two_person_release_delivers_the_original(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined", rcpt_tos=RCPTS, mail_from="orig@example.com")
    rid = await _request(api, mid)
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve", "approver", json={"reason": "確認済"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "released" and out["decided_by"] == "approver"
    assert out["rcpt_tos"] == list(RCPTS) and out["result"]["accepted"] == list(RCPTS)
    got = api.sink.messages[-1]
    assert got.mail_from == "orig@example.com" and got.rcpt_tos == list(RCPTS)
    assert got.data.startswith(b"X-Mugai-Released-By: approver\r\n")
    assert got.data.split(b"\r\n", 1)[1].rstrip(b"\r\n") == raw_mail().rstrip(b"\r\n")
    detail = (await api.get(f"/api/v1/messages/{mid}", "viewer")).json()
    assert detail["status"] == "released"
    log = (await api.get("/api/v1/audit", "auditor", params={"target": mid})).json()
    assert [e["action"] for e in reversed(log["items"])] == [
        "release.request",
        "release.approve",
        "release.delivered",
    ]
    assert log["items"][1]["detail"]["reason"] == "確認済"
    assert api.gw.store.verify_audit().ok


async def test_subset_of_recipients(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined", rcpt_tos=RCPTS)
    rid = await _request(api, mid)
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve",
        "approver",
        json={"rcpt_tos": ["b@town.example.lg.jp"]},
    )
    assert r.status_code == 200
    assert api.sink.messages[-1].rcpt_tos == ["b@town.example.lg.jp"]


async def test_only_original_recipients(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined", rcpt_tos=RCPTS)
    rid = await _request(api, mid)
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve",
        "approver",
        json={"rcpt_tos": ["attacker@evil.example"]},
    )
    assert r.status_code == 409 and r.json()["detail"] == "recipient_not_in_original"
    assert api.sink.messages == []


async def test_requester_cannot_approve_own_request(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid, who="approver")
    for who in ("approver",):
        r = await api.post(f"/api/v1/release-requests/{rid}/approve", who)
        assert r.status_code == 403 and r.json()["detail"] == "approver_is_requester"
        r = await api.post(f"/api/v1/release-requests/{rid}/reject", who)
        assert r.status_code == 403
    assert api.sink.messages == []
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 200 and len(api.sink.messages) == 1
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "admin")
    assert r.status_code == 409  # already released: no second delivery
    assert len(api.sink.messages) == 1


async def test_reason_is_mandatory(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 2001}, {"why": "x"}):
        r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=body)
        assert r.status_code == 422, body
    r = await api.post(
        "/api/v1/messages/nope/release-requests",
        "operator",
        json={"reason": "x", "category": "other"},
    )
    assert r.status_code == 404


async def test_reject(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    r = await api.post(
        f"/api/v1/release-requests/{rid}/reject", "approver", json={"reason": "業務外"}
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 409
    assert api.sink.messages == []
    r = await api.get("/api/v1/release-requests", "viewer", params={"status": "rejected"})
    assert [i["id"] for i in r.json()["items"]] == [rid]
    r = await api.get(f"/api/v1/release-requests/{rid}", "viewer")
    assert r.json()["decision_reason"] == "業務外"


async def test_relay_failure_is_recorded_and_can_be_retried(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    api.sink.data_reply = "451 4.3.0 try later"
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 502
    assert r.json()["status"] == "failed" and r.json()["result"]["error"] == "relay_temporary"
    assert (await api.get(f"/api/v1/messages/{mid}", "viewer")).json()["status"] == "quarantined"
    api.sink.data_reply = None
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert len(api.sink.messages) == 1


async def test_auditor_reads_the_log_and_nothing_else_acts(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined")
    rid = await _request(api, mid)
    assert (await api.get("/api/v1/audit", "auditor")).status_code == 200
    for path, body in (
        (f"/api/v1/messages/{mid}/release-requests", {"reason": "x", "category": "other"}),
        (f"/api/v1/release-requests/{rid}/approve", None),
        (f"/api/v1/release-requests/{rid}/reject", None),
    ):
        assert (await api.post(path, "auditor", json=body)).status_code == 403
    assert (await api.get(f"/api/v1/messages/{mid}/original", "auditor")).status_code == 403
    r = await api.client.delete(f"/api/v1/messages/{mid}", headers=api.auth("auditor"))
    assert r.status_code == 403
    assert (await api.get("/api/v1/audit", "approver")).status_code == 403


async def test_a_nul_in_a_reason_is_422_not_500(api: Api, seed: Callable[..., str]) -> None:
    # PostgreSQL cannot store a NUL in text: every reason field was a 500 there.
    mid = seed(status="quarantined", rcpt_tos=RCPTS)
    r = await api.post(
        f"/api/v1/messages/{mid}/release-requests", "operator",
        json={"reason": "見積書\x00です", "category": "business_required"},
    )  # fmt: skip
    assert r.status_code == 422, r.text
    rid = await _request(api, mid)
    for action in ("approve", "reject"):
        r = await api.post(
            f"/api/v1/release-requests/{rid}/{action}", "approver", json={"reason": "a\x00"}
        )
        assert r.status_code == 422, (action, r.text)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver", json={})
    assert r.status_code == 200, r.text
    r = await api.post(
        f"/api/v1/messages/{mid}/release-reopen", "admin", json={"reason": "再送\x00"}
    )
    assert r.status_code == 422, r.text
    # Multi-line reasons stay fine.
    r = await api.post(
        f"/api/v1/messages/{mid}/release-reopen", "admin", json={"reason": "再送\n理由"}
    )
    assert r.status_code == 200, r.text
