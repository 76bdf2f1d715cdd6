"""The admin listener's outermost layer (plain ASGI, in front of FastAPI and its middlewares).

- Host allowlist: a DNS-rebinding page in an operator's browser sends its own name as Host;
  anything not in ``[admin] allowed_hosts`` gets 400 on every route, ``/metrics`` included.
- Streaming body limit: every request body is counted as it arrives and cut at the limit with
  413, whether or not ``Content-Length`` was sent (chunked uploads used to be spooled whole).
- Security headers on every response, the 500 page of ``ServerErrorMiddleware`` included
  (it answers from outside the app's own middlewares).
- A client that goes away mid-body is one INFO line, not an "Exception in ASGI application"
  traceback per abandoned request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect
from uvicorn.server import ServerState

from gateway.api.console.render import SECURITY_HEADERS

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATH = "/api/v1/files"
# Multipart framing around the one file (boundaries, part headers, a few small fields).
UPLOAD_OVERHEAD = 64 * 1024
_API = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json")
_API_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def host_of(header: str) -> str:
    """The host part of a Host header, lower-cased, without port or brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def headers_for(path: str) -> dict[str, str]:
    return dict(_API_HEADERS) if path.startswith(_API) else dict(SECURITY_HEADERS)


class Guard:
    def __init__(
        self, app: ASGIApp, *, hosts: frozenset[str], body_limit: int, upload_limit: int
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.body_limit = body_limit
        self.upload_limit = upload_limit

    def limit_for(self, scope: Scope) -> int:
        if scope.get("method") == "POST" and scope.get("path") == UPLOAD_PATH:
            return self.upload_limit + UPLOAD_OVERHEAD
        return self.body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        extra = headers_for(path)
        raw_headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        hosts = [v for k, v in raw_headers if k == b"host"]
        if len(hosts) != 1 or host_of(hosts[0].decode("latin-1")) not in self.hosts:
            await _answer(send, 400, "host_not_allowed", extra)
            return
        limit = self.limit_for(scope)
        declared = [v for k, v in raw_headers if k == b"content-length"]
        if declared and not declared[0].isdigit():
            await _answer(send, 400, "bad_content_length", extra)  # h11 refuses these first
            return
        if declared and int(declared[0]) > limit:
            await _answer(send, 413, "body_too_large", extra)
            return
        started = False
        cut = False
        seen = 0

        async def counted_receive() -> Message:
            # Past the limit the app is told the client left: whatever it was parsing stops,
            # and its answer to that is replaced by our 413 below.
            nonlocal seen, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    cut = True
                    return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if cut:
                return
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [
                    (k.lower().encode(), v.encode())
                    for k, v in extra.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except Exception as exc:
            if not cut and not _disconnect(exc):
                raise
            if not cut:
                # The client left mid-body: nothing to answer, nothing worth a traceback.
                log.info(
                    "job=- client disconnected before its request body was complete path=%r",
                    path[:200],  # repr: a decoded %0a in the path cannot forge log lines
                )
                return
        if cut:
            log.info("job=- request body over %d bytes cut path=%r", limit, path[:200])
            if not started:
                await _answer(send, 413, "body_too_large", extra)


class ConnectionCap:
    """The admin listener's connection cap, answered as every other refusal of ours.

    uvicorn's own ``limit_concurrency`` answers a bare text 503 without the security headers;
    this is the same count (open connections, running requests; uvicorn's server state, set
    once the server exists) with our JSON body, headers and a Retry-After.
    """

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap
        self.server_state: ServerState | None = None

    @property
    def state(self) -> Any:
        """The wrapped app's state (``config.app.state`` keeps reaching the FastAPI app)."""
        return getattr(self.app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.server_state
        if (
            scope["type"] == "http"
            and state is not None
            and (len(state.connections) > self.cap or len(state.tasks) > self.cap)
        ):
            extra = headers_for(str(scope.get("path", ""))) | {"Retry-After": "1"}
            await _answer(send, 503, "too_many_connections", extra)
            return
        await self.app(scope, receive, send)


def _disconnect(exc: BaseException) -> bool:
    """ClientDisconnect, also inside the exception groups BaseHTTPMiddleware's task groups add."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_disconnect(e) for e in exc.exceptions)
    return isinstance(exc, ClientDisconnect) or (
        exc.__cause__ is not None and _disconnect(exc.__cause__)
    )


async def _answer(send: Send, status: int, detail: str, extra: dict[str, str]) -> None:
    # No "Connection: close": uvicorn discards (never stores) the rest of a refused body, so
    # the client reads a clean answer; the body read deadline still bounds how long.
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in extra.items()],
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
