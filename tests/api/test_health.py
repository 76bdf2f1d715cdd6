from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.api.main import create_app
from gateway.relay import SmtpRelay
from gateway.store.repository import Store
from tests.api.conftest import Api, mini_gateway
from tests.plugins.smtp_sink import Sink


async def test_health_needs_no_token(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_tcp_address: str
) -> None:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=5)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_tcp_address)
    transport = httpx.ASGITransport(app=create_app(gw))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "ready": True,
            "checks": {
                "spool": True,
                "database": True,
                "clamd": True,
                "relay": True,
                "isolation": True,
            },
        }
        gw.relay = SmtpRelay("127.0.0.1:1", hostname="mugai.test", timeout=2)
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["relay"] is False


async def test_metrics(api: Api, seed: Callable[..., str]) -> None:
    seed()
    seed(status="quarantined", reason="virus_found")
    seed(status="quarantined", reason="encrypted")
    r = await api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'mugai_messages{status="delivered"} 1.0' in text
    assert 'mugai_messages{status="quarantined"} 2.0' in text
    assert 'mugai_messages{status="released"} 0.0' in text
    assert 'mugai_messages_by_reason{reason="virus_found",status="quarantined"} 1.0' in text
    assert "mugai_spool_depth 0.0" in text


async def test_audit_pages(api: Api) -> None:
    for i in range(5):
        api.gw.store.audit("system", "config.reload", "", {"n": i})
    seen: list[int] = []
    cursor = ""
    while True:
        params = {"limit": 3, "action": "config.reload"} | ({"cursor": cursor} if cursor else {})
        body = (await api.get("/api/v1/audit", "auditor", params=params)).json()
        seen += [e["seq"] for e in body["items"]]
        if not body["next"]:
            break
        cursor = body["next"]
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    entry = body["items"][-1]
    assert set(entry) == {"seq", "at", "actor", "action", "target", "detail", "prev_hash", "hash"}
    assert (await api.get("/api/v1/audit", "auditor", params={"cursor": "-1"})).status_code == 422


async def test_token_admin_api(api: Api) -> None:
    r = await api.post("/api/v1/tokens", "admin", json={"name": "kato", "role": "operator"})
    assert r.status_code == 201
    created = r.json()
    assert api.gw.store.authenticate(created["token"]) is not None
    listing = (await api.get("/api/v1/tokens", "admin")).json()["items"]
    assert "kato" in [t["name"] for t in listing]
    assert all("token" not in t for t in listing)
    r = await api.client.delete(f"/api/v1/tokens/{created['id']}", headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["items"][0]["revoked_at"]
    assert api.gw.store.authenticate(created["token"]) is None
    r = await api.post("/api/v1/tokens", "admin", json={"name": "a\nb", "role": "operator"})
    assert r.status_code == 422
    r = await api.post("/api/v1/tokens", "operator", json={"name": "x", "role": "admin"})
    assert r.status_code == 403


async def test_readyz_not_ready_without_the_converter_jail(
    tmp_path: Path, store: Store, smtp_sink: Sink, clamd_tcp_address: str, monkeypatch: Any
) -> None:
    from gateway.sanitize import jail

    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=5)
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_tcp_address)
    transport = httpx.ASGITransport(app=create_app(gw))
    # Fault injection: bubblewrap missing on this host.
    monkeypatch.setattr(jail, "BWRAP", "/nonexistent/bwrap")
    jail.reset_probe()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            r = await client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["checks"]["isolation"] is False and body["ready"] is False
        assert "bwrap" in body["isolation_cause"]
    finally:
        monkeypatch.undo()
        jail.reset_probe()
