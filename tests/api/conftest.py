"""The admin API around a small real gateway object: a real Store (SQLite and PostgreSQL),
a real SmtpRelay pointed at the smtp_sink fixture, a real spool, a real clamd client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.main import create_app
from gateway.relay import Relay, SmtpRelay
from gateway.scan.clamd import ClamdScanner
from gateway.settings import Settings, load_settings
from gateway.spool import Spool
from gateway.store.repository import Store
from tests.plugins.smtp_sink import Sink
from tests.store.backends import pg_database, store, store_url  # noqa: F401 - fixtures

ROLES = ("viewer", "operator", "approver", "auditor", "admin")


@dataclass
class MiniGateway:
    settings: Settings
    store: Store
    relay: Relay
    spool: Spool
    scanner: ClamdScanner


def mini_gateway(
    tmp_path: Path,
    store: Store,  # noqa: F811 - a parameter, not the fixture of the same name
    relay: Relay,
    clamd: str = "127.0.0.1:1",
) -> Any:
    settings = load_settings(None, storage={"data_dir": str(tmp_path / "data")})
    return MiniGateway(
        settings=settings,
        store=store,
        relay=relay,
        spool=Spool(settings.spool_dir),
        scanner=ClamdScanner(clamd, timeout=2),
    )


@dataclass
class Api:
    client: httpx.AsyncClient
    gw: MiniGateway
    sink: Sink
    tokens: dict[str, str]  # role (and extra names) → token

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(who), **kw)

    async def post(self, path: str, who: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, headers=self.auth(who), **kw)


@pytest.fixture
async def api(
    tmp_path: Path,
    store: Store,  # noqa: F811
    smtp_sink: Sink,  # noqa: F811
    clamd_address: str,
) -> AsyncIterator[Api]:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", timeout=10)
    # A real clamd: an original is scanned again before a release sends it.
    gw = mini_gateway(tmp_path, store, relay, clamd=clamd_address)
    tokens = {role: store.create_token(role, role, "test")[0] for role in ROLES}
    # A second approver, so a request by one approver can be decided by another.
    tokens["approver2"] = store.create_token("approver2", "approver", "test")[0]
    transport = httpx.ASGITransport(app=create_app(gw))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield Api(client, gw, smtp_sink, tokens)


@pytest.fixture
def seed(store: Store) -> Callable[..., str]:  # noqa: F811
    from tests.store.seed import add_message

    return lambda **kw: add_message(store, **kw)
