"""Runs the admin API on the gateway's own event loop (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.api.deps import GatewayPorts
from gateway.api.guard import ConnectionCap
from gateway.api.main import create_app
from gateway.settings import Settings, split_hostport

log = logging.getLogger(__name__)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with the read deadlines uvicorn lacks (slowloris).

    A request's headers must be complete within ``header_timeout`` of the connection (or of
    the previous response), its body within ``body_timeout`` of the headers; otherwise the
    connection is closed. While the app works on a complete request no deadline runs.
    """

    header_timeout = 10.0
    body_timeout = 120.0
    _deadline: asyncio.TimerHandle | None = None
    _phase = ""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else ""
        if phase == self._phase:
            return  # this phase's deadline is already running (or none is needed)
        self._cancel()
        self._phase = phase
        if phase:
            timeout = self.header_timeout if phase == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(timeout, self._expired, phase)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("job=- admin client too slow sending its request %s, dropped", phase)
            self.transport.close()


def _protocol(settings: Settings) -> type[GuardedH11]:
    return type(
        "AdminH11",
        (GuardedH11,),
        {
            "header_timeout": settings.admin.header_timeout,
            "body_timeout": settings.admin.body_timeout,
        },
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `mugai serve` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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


async def start_admin(settings: Settings, gateway: GatewayPorts) -> AdminServer:
    """The API/console listener. Typed against the ports the API uses, so the API never
    imports the composition root (``gateway.app``), not even for types."""
    host, port = split_hostport(settings.admin.listen, 8025)
    admin = settings.admin
    app = ConnectionCap(create_app(gateway), admin.max_connections)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        http=_protocol(settings),
        timeout_keep_alive=max(1, round(admin.keepalive_timeout)),
        h11_max_incomplete_event_size=64 * 1024,  # request line and headers at most
        server_header=False,
    )
    server = _Server(config)
    app.server_state = server.server_state
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return AdminServer(server, task)
