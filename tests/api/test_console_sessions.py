"""Console sign-in under abuse, against a REAL uvicorn on port 0: session flooding by one token,
login nonces chosen by the client or replayed, attempt limits, the failed sign-in metric."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.console.session import COOKIE, LOGIN_COOKIE
from gateway.api.server import AdminServer, start_admin
from gateway.relay import SmtpRelay
from gateway.settings import load_settings
from gateway.store.repository import Store
from tests.api.conftest import mini_gateway
from tests.api.test_console import csrf_of
from tests.plugins.smtp_sink import Sink

pytestmark = pytest.mark.timeout(180)


class Site:
    def __init__(self, server: AdminServer, store: Store) -> None:
        self.server = server
        self.store = store
        self.base = f"http://127.0.0.1:{server.port}"
        self.app: Any = server.server.config.app
        self.clients: list[httpx.AsyncClient] = []

    def client(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(base_url=self.base, timeout=30)
        self.clients.append(c)
        return c

    async def sign_in(self, c: httpx.AsyncClient, token: str) -> httpx.Response:
        form = await c.get("/login")
        assert form.status_code == 200
        return await c.post("/login", data={"csrf": csrf_of(form.text), "token": token})


async def _site(tmp_path: Path, store: Store, sink: Sink, **admin: Any) -> AsyncIterator[Site]:
    gw = mini_gateway(tmp_path, store, SmtpRelay(sink.address, hostname="t", timeout=10))
    gw.settings = load_settings(
        None,
        storage={"data_dir": str(tmp_path / "data")},
        admin={"listen": "127.0.0.1:0", **admin},
    )
    server = await start_admin(gw.settings, gw)
    site = Site(server, store)
    try:
        yield site
    finally:
        for c in site.clients:
            await c.aclose()
        await server.stop()


async def test_session_flood_by_one_token_leaves_another_users_session_alive(
    tmp_path: Path, store: Store, smtp_sink: Sink
) -> None:
    async for site in _site(
        tmp_path,
        store,
        smtp_sink,
        sessions_per_user=3,
        login_attempts_per_token=1000,
        login_attempts_per_address=1000,
    ):
        site.app.state.console_sessions.limit = 20  # a small store, so a flood would fill it
        viewer, _ = store.create_token("mallory", "viewer", "test")
        approver, _ = store.create_token("suzuki", "approver", "test")
        victim = site.client()
        assert (await site.sign_in(victim, approver)).status_code == 303
        attacker = site.client()
        sids = []
        for _ in range(60):  # 3x the whole store
            attacker.cookies.clear()
            r = await site.sign_in(attacker, viewer)
            assert r.status_code == 303
            sids.append(r.cookies[COOKIE])
        page = await victim.get("/messages")
        assert page.status_code == 200, page.headers.get("location")
        sessions = site.app.state.console_sessions
        assert len(sessions) == 4  # the approver's one + the viewer's newest three
        alive = [sid for sid in sids if sessions.get(sid) is not None]
        assert alive == sids[-3:]


async def test_login_nonce_is_server_issued_and_single_use(
    tmp_path: Path, store: Store, smtp_sink: Sink
) -> None:
    async for site in _site(tmp_path, store, smtp_sink):
        token, _ = store.create_token("tanaka", "operator", "test")
        c = site.client()
        # A nonce the client (or a page elsewhere) picked is not one the server issued.
        chosen = "a" * 43
        c.cookies.set(LOGIN_COOKIE, chosen, domain="127.0.0.1", path="/login")
        r = await c.post("/login", data={"csrf": chosen, "token": token})
        assert r.status_code == 403 and COOKIE not in r.cookies
        form = await c.get("/login")
        assert csrf_of(form.text) != chosen  # the form never echoes the client's value
        nonce = csrf_of(form.text)
        r = await c.post("/login", data={"csrf": nonce, "token": token})
        assert r.status_code == 303
        replay = site.client()  # the same nonce again, cookie and field
        replay.cookies.set(LOGIN_COOKIE, nonce, domain="127.0.0.1", path="/login")
        r = await replay.post("/login", data={"csrf": nonce, "token": token})
        assert r.status_code == 403 and COOKIE not in r.cookies


async def test_login_attempts_are_limited_and_failures_counted(
    tmp_path: Path, store: Store, smtp_sink: Sink
) -> None:
    async for site in _site(
        tmp_path,
        store,
        smtp_sink,
        login_attempts_per_token=3,
        login_attempts_per_address=6,
        login_window="1h",
    ):
        good, _ = store.create_token("tanaka", "operator", "test")
        c = site.client()

        def failures(text: str, reason: str) -> float:
            for line in text.splitlines():
                if line.startswith(f'mugai_console_login_failures_total{{reason="{reason}"}}'):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before = (await c.get("/metrics")).text
        for _ in range(3):
            r = await site.sign_in(c, "mgt_guess")
            assert r.status_code == 401
        r = await site.sign_in(c, "mgt_guess")  # the 4th try of the same token
        assert r.status_code == 429 and "試行が多すぎます" in r.text
        r = await site.sign_in(c, good)  # another token from this address still may
        assert r.status_code == 303
        c.cookies.clear()
        r = await site.sign_in(c, "mgt_other")  # 6th attempt from this address
        assert r.status_code == 401
        r = await site.sign_in(c, good)  # 7th: the address is over its limit, token or not
        assert r.status_code == 429
        after = (await c.get("/metrics")).text
        assert failures(after, "invalid_token") - failures(before, "invalid_token") == 4
        assert failures(after, "too_many_attempts") - failures(before, "too_many_attempts") == 2
        signins = [e for e in store.audit_entries() if e.action == "console.signin"]
        assert len(signins) == 1


async def test_a_role_change_ends_the_persons_console_sessions(
    tmp_path: Path, store: Store, smtp_sink: Sink
) -> None:
    async for site in _site(tmp_path, store, smtp_sink):
        token, _ = store.create_token("suzuki", "approver", "test")
        c = site.client()
        assert (await site.sign_in(c, token)).status_code == 303
        assert (await c.get("/releases")).status_code == 200
        store.set_user_role("suzuki", "viewer", "cli:root")
        r = await c.get("/releases")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert (await site.sign_in(c, token)).status_code == 303
        sessions = site.app.state.console_sessions
        assert [s.principal.role for s in sessions._items.values()] == ["viewer"]


def test_login_nonces_survive_a_flood_and_cannot_be_forged() -> None:
    from gateway.api.console.throttle import LoginNonces

    nonces = LoginNonces(limit=100)
    mine = nonces.issue()
    for _ in range(20_000):  # someone hammering GET /login
        nonces.issue()
    assert nonces.reusable(mine) and not nonces.reusable("a" * 43)
    assert nonces.consume(mine) and not nonces.consume(mine)
    assert not nonces.reusable(mine)  # used: a new form gets a new one
    body, _, mac = nonces.issue().rpartition(".")
    assert not nonces.consume(f"{body}.{'0' * len(mac)}")  # forged MAC
    assert not nonces.consume(f"0.{body.partition('.')[2]}.{mac}")  # edited issue time
    assert not LoginNonces().consume(nonces.issue())  # another process's key
    old = LoginNonces(ttl=-1)
    assert not old.consume(old.issue())  # expired
