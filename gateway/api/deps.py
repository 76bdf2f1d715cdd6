"""Authentication and role checks.

The middleware authenticates every ``/api/`` request before FastAPI parses a body or a path
parameter, so without a valid token nothing but a 401 comes back. Routes then declare the
permission they need with ``Depends(require("original"))`` (403 below it); the bearer scheme
appears in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.model import ScanResult
from gateway.relay import Relay
from gateway.settings import Settings
from gateway.spool import Spool
from gateway.store.repository import Store
from gateway.store.tokens import Principal

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="API token from `mugai token create`")
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def bearer_token(header: str) -> str:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def auth_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if str(request.scope.get("path", "")).startswith("/api/"):
        token = bearer_token(request.headers.get("authorization", ""))
        principal = None
        if token:
            store = request.app.state.gateway.store
            principal = await asyncio.to_thread(store.authenticate, token)
        if principal is None:
            return JSONResponse({"detail": "unauthorized"}, status_code=401, headers=_UNAUTHORIZED)
        request.state.principal = principal
    return await call_next(request)


class Pingable(Protocol):
    async def ping(self) -> bool: ...

    async def scan(self, data: bytes) -> ScanResult: ...  # PPAP unlock scans what it decrypts


class GatewayPorts(Protocol):
    """What the API uses of ``gateway.app.Gateway`` (tests pass a small object with these)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def relay(self) -> Relay: ...
    @property
    def spool(self) -> Spool: ...
    @property
    def scanner(self) -> Pingable: ...


def gateway(request: Request) -> GatewayPorts:
    gw: GatewayPorts = request.app.state.gateway
    return gw


GatewayDep = Annotated[GatewayPorts, Depends(gateway)]


def require(permission: str) -> Callable[..., Any]:
    def dependency(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # the middleware guards /api/; this is belt and braces
            raise HTTPException(401, "unauthorized", headers=_UNAUTHORIZED)
        if not principal.can(permission):
            raise HTTPException(403, "forbidden")
        return principal

    return dependency
