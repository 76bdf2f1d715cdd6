"""A real SMTP listener on port 0 with its spool, for the abuse tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.ingress.smtp import start_smtp
from gateway.settings import load_settings
from gateway.spool import Spool

DOMAIN = "town.example.lg.jp"


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.base_events.Server] = []

    async def start(**smtp: Any) -> tuple[int, Spool]:
        settings = load_settings(
            None,
            smtp={"listen": "127.0.0.1:0", "accepted_domains": [DOMAIN], **smtp},
            storage={"data_dir": str(tmp_path / "data")},
        )
        spool = Spool(settings.spool_dir)
        server = await start_smtp(settings, spool, asyncio.Event())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1]), spool

    yield start
    for s in servers:
        s.close()
