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
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.store.errors import Conflict, NotAllowed, NotFound, StoreError
from gateway.store.tokens import Principal

if TYPE_CHECKING:
    from gateway.app import Gateway

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
            return JSONResponse(
                {"detail": "unauthorized"}, status_code=401, headers=_UNAUTHORIZED
            )
        request.state.principal = principal
    return await call_next(request)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


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


def http_error(exc: StoreError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(404, exc.reason)
    if isinstance(exc, NotAllowed):
        return HTTPException(403, exc.reason)
    if isinstance(exc, Conflict):
        return HTTPException(409, exc.reason)
    return HTTPException(400, exc.reason)
