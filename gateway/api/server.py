"""Runs the admin API on the gateway's own event loop (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from gateway.api.main import create_app
from gateway.settings import Settings, split_hostport
from gateway.store.retention import purge_loop

if TYPE_CHECKING:
    from gateway.app import Gateway


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `mugai serve` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AdminServer:
    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        purge_task: asyncio.Task[None] | None = None,
    ) -> None:
        self.server = server
        self.task = task
        self.purge_task = purge_task

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        return int(servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.purge_task is not None:
            self.purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.purge_task
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


async def start_admin(
    settings: Settings, gateway: Gateway, *, purge: bool = True
) -> AdminServer:
    """The API/console listener, and the retention timer (the management side of `serve`)."""
    host, port = split_hostport(settings.admin.listen, 8025)
    config = uvicorn.Config(
        create_app(gateway), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    purge_task = (
        asyncio.create_task(purge_loop(gateway.store, settings.retention), name="retention")
        if purge
        else None
    )
    return AdminServer(server, task, purge_task)
