"""The admin API on its real listener (uvicorn, port 0): without, with malformed, wrong or
revoked tokens nothing under /api/ answers but 401; too small a role gets 403."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.api.server import start_admin
from tests.plugins.smtp_sink import Sink

pytestmark = pytest.mark.timeout(120)
PATHS = ["/api/v1/messages", "/api/v1/audit", "/api/v1/messages/x/original"]


async def test_tokens_on_the_real_listener(gateway_factory: Any, smtp_sink: Sink) -> None:
    gw = await gateway_factory(smtp_sink)
    admin = await start_admin(gw.settings, gw)
    try:
        viewer, _ = gw.store.create_token("v", "viewer", "test")
        revoked, _ = gw.store.create_token("r", "admin", "test")
        gw.store.revoke_tokens("r", "test")
        base = f"http://127.0.0.1:{admin.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            assert (await client.get("/healthz")).status_code == 200
            bad_headers: list[dict[str, str]] = [
                {},
                {"Authorization": "Bearer"},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {viewer}"},
                {"Authorization": f"Bearer {viewer}x"},
                {"Authorization": f"Bearer {viewer[:-1]}"},
                {"Authorization": f"Bearer {revoked}"},
                {"Authorization": "Bearer ' OR '1'='1"},
                {"Authorization": "Bearer " + "A" * 10_000},
            ]
            for headers in bad_headers:
                for path in PATHS:
                    r = await client.get(path, headers=headers)
                    assert r.status_code == 401, (headers.get("Authorization", "")[:40], path)
                    assert "items" not in r.text
            # Query-string tokens are not a way in either.
            r = await client.get(f"/api/v1/messages?token={viewer}&access_token={viewer}")
            assert r.status_code == 401
            ok = {"Authorization": f"Bearer {viewer}"}
            assert (await client.get("/api/v1/messages", headers=ok)).status_code == 200
            assert (await client.get("/api/v1/audit", headers=ok)).status_code == 403
            r = await client.delete("/api/v1/messages/x", headers=ok)
            assert r.status_code in (403, 404, 405)
            assert r.status_code != 200
    finally:
        await admin.stop()
