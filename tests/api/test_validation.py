"""Query parameters at their edges, against a REAL uvicorn on port 0: 422 with a message, never
a 500; the console's pages for bad input and its error pages carry the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.api.server import start_admin
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.api.test_console import csrf_of
from tests.plugins.smtp_sink import Sink
from tests.store.seed import add_message

pytestmark = pytest.mark.timeout(120)
OVERFLOWS = (
    "0001-01-01T00:00:00+14:00",  # in UTC: year 0
    "9999-12-31T23:59:59-14:00",  # in UTC: year 10000
    "0001-01-01T00:00:00",
    "9999-12-31",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
)


@pytest.fixture
async def site(tmp_path: Path, store: Store, smtp_sink: Sink) -> AsyncIterator[httpx.AsyncClient]:
    gw = mini_gateway(tmp_path, store, SmtpRelay(smtp_sink.address, hostname="t", timeout=10))
    gw.settings = load_settings(
        None, storage={"data_dir": str(tmp_path / "data")}, admin={"listen": "127.0.0.1:0"}
    )
    server = await start_admin(gw.settings, gw)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
        yield c
    await server.stop()


async def test_api_date_overflows_are_422_with_a_message(
    site: httpx.AsyncClient, store: Store
) -> None:
    add_message(store, status="delivered")
    token, _ = store.create_token("v", "viewer", "test")
    auth = {"Authorization": f"Bearer {token}"}
    for value in OVERFLOWS:
        for name in ("since", "until"):
            r = await site.get("/api/v1/messages", params={name: value}, headers=auth)
            assert r.status_code == 422, (name, value, r.status_code)
            assert "out of range" in r.text or "datetime" in r.text, r.text
    for params in ({"limit": str(10**30)}, {"limit": "-1"}, {"cursor": "x" * 65}):
        r = await site.get("/api/v1/messages", params=params, headers=auth)
        assert r.status_code == 422, params
    r = await site.get("/api/v1/audit", params={"cursor": "9" * 19}, headers=auth)
    assert r.status_code in (403, 422)  # a viewer: forbidden before or after validation
    # Edges that are fine still work, with aware and naive values.
    for value in ("1970-01-01T00:00:00Z", "2999-12-31T00:00:00+09:00", "2026-01-01T00:00:00"):
        r = await site.get("/api/v1/messages", params={"since": value}, headers=auth)
        assert r.status_code == 200, (value, r.text)


async def test_console_date_overflow_is_422_on_a_page_with_its_headers(
    site: httpx.AsyncClient, store: Store
) -> None:
    token, _ = store.create_token("v", "viewer", "test")
    form = await site.get("/login")
    r = await site.post("/login", data={"csrf": csrf_of(form.text), "token": token})
    assert r.status_code == 303
    for params in (
        {"until": "9999-12-31"},
        {"since": "0001-01-01"},
        {"since": "1969-12-31"},
        {"until": "3000-01-01"},
        {"since": "2026-02-30"},
    ):
        r = await site.get("/messages", params=params)
        assert r.status_code == 422, (params, r.status_code)
        assert "正しくないため無視しました" in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    r = await site.get("/messages", params={"since": "2026-01-01", "until": "2999-12-31"})
    assert r.status_code == 200


async def test_control_characters_in_text_parameters_are_422(
    site: httpx.AsyncClient, store: Store
) -> None:
    # PostgreSQL cannot take a NUL in a text parameter: these were 500s there.
    add_message(store, status="delivered")
    token, _ = store.create_token("au", "admin", "test")
    auth = {"Authorization": f"Bearer {token}"}
    for path, name in (
        ("/api/v1/messages", "sender"),
        ("/api/v1/messages", "recipient"),
        ("/api/v1/messages", "message_id"),
        ("/api/v1/audit", "action"),
        ("/api/v1/audit", "target"),
    ):
        for value in ("a\x00b", "a\x1fb"):
            r = await site.get(path, params={name: value}, headers=auth)
            assert r.status_code == 422, (path, name, r.status_code, r.text[:200])
            assert "control character" in r.text
        r = await site.get(path, params={name: "山田 <a@example.com>"}, headers=auth)
        assert r.status_code == 200, (path, name, r.text[:200])
