"""Runs the admin API on the gateway's own event loop (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import uvicorn

from gateway.api.main import create_app
from gateway.settings import Settings, split_hostport

if TYPE_CHECKING:
    from gateway.app import Gateway


class AdminServer:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        return int(servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


async def start_admin(settings: Settings, gateway: Gateway) -> AdminServer:
    host, port = split_hostport(settings.admin.listen, 8025)
    config = uvicorn.Config(
        create_app(gateway), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return AdminServer(server, task)
