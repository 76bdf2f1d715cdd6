"""An original is scanned again (real clamd) right before a release sends it.

The attacks: an original quarantined for a reason other than a virus was never scanned
(crash loop, queue timeout, too large for clamd), so "release" would forward unscanned
content; clamd being down at release time must not let it through either.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.scan.clamd import ClamdScanner
from tests.api.conftest import Api
from tests.store.seed import raw_mail

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
BODY = {"reason": "取引先からの正式な書類", "category": "business_required"}


def _with_eicar() -> bytes:
    return raw_mail("<rescan@example.com>").replace(b"<p>original", EICAR + b"\r\n<p>original")


async def _request(api: Api, mid: str) -> str:
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator", json=BODY)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _failures(api: Api) -> list[str]:
    r = await api.get("/api/v1/audit", "auditor", params={"action": "release.failed"})
    assert r.status_code == 200, r.text
    return sorted(str(i["detail"].get("error", "")) for i in r.json()["items"])


async def test_an_unscanned_original_with_a_virus_is_never_released(
    api: Api, seed: Callable[..., str]
) -> None:
    # Quarantined by a crash loop: the record says nothing about a virus.
    mid = seed(status="quarantined", reason="crash_loop", raw=_with_eicar())
    rid = await _request(api, mid)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver", json={})
    assert r.status_code == 502, r.text
    assert r.json()["status"] == "failed"
    assert r.json()["result"]["error"] == "virus_found"
    signature = r.json()["result"]["signature"]
    assert "EICAR" in signature
    assert api.sink.messages == []
    # Typing the signature back does not help while the policy forbids infected releases.
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve", "approver2",
        json={"confirm_signature": signature},
    )  # fmt: skip
    assert r.status_code == 502 and r.json()["result"]["error"] == "virus_found"
    assert api.sink.messages == []


async def test_an_original_clamd_cannot_take_needs_the_word_unscanned(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined", reason="too_large_to_scan")
    rid = await _request(api, mid)
    real = api.gw.scanner
    api.gw.scanner = ClamdScanner(real.address, timeout=10, max_stream_bytes=16)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver", json={})
    assert r.status_code == 502 and r.json()["result"]["error"] == "too_large_to_scan"
    assert api.sink.messages == []
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve", "approver",
        json={"confirm_signature": "  unscanned "},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"
    assert len(api.sink.messages) == 1


async def test_clamd_down_withholds_the_release_until_it_is_back(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="quarantined", reason="queue_timeout")
    rid = await _request(api, mid)
    real = api.gw.scanner
    api.gw.scanner = ClamdScanner("127.0.0.1:1", timeout=2)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver", json={})
    assert r.status_code == 502 and r.json()["result"]["error"] == "clamd_unavailable"
    # "unscanned" is for an original clamd refused as too large, not for clamd being away.
    r = await api.post(
        f"/api/v1/release-requests/{rid}/approve", "approver",
        json={"confirm_signature": "unscanned"},
    )  # fmt: skip
    assert r.status_code == 502 and r.json()["result"]["error"] == "clamd_unavailable"
    assert api.sink.messages == []
    api.gw.scanner = real
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver", json={})
    assert r.status_code == 200, r.text
    assert len(api.sink.messages) == 1
    assert await _failures(api) == ["clamd_unavailable"] * 2  # both refusals are audited


async def test_a_sanitized_copy_release_is_not_blocked_by_the_rescan(
    api: Api, seed: Callable[..., str]
) -> None:
    mid = seed(status="delivered", raw=_with_eicar())
    r = await api.post(
        f"/api/v1/messages/{mid}/release-requests", "operator",
        json={"reason": "再送", "kind": "sanitized"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    api.gw.scanner = ClamdScanner("127.0.0.1:1", timeout=2)  # not consulted for the copy
    r = await api.post(f"/api/v1/release-requests/{r.json()['id']}/approve", "approver", json={})
    assert r.status_code == 200, r.text
    assert len(api.sink.messages) == 1
    assert EICAR not in api.sink.messages[0].data
