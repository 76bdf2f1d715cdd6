"""FastAPI application factory for the admin API (DESIGN.md §4.5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.api import console
from gateway.api.deps import GatewayPorts, auth_middleware
from gateway.api.guard import Guard
from gateway.api.metrics import make_registry
from gateway.api.routes import audit, files, health, messages, releases, tokens, unlock
from gateway.api.routes import reports as monthly_reports  # issue 16
from gateway.errors import Refused


class AdminApp(FastAPI):
    """FastAPI with the guard (Host allowlist, streaming body limit, security headers) in front
    of everything, ``ServerErrorMiddleware`` included, so even a 500 page passes through it."""

    def build_middleware_stack(self) -> Any:
        settings = self.state.gateway.settings
        return Guard(
            super().build_middleware_stack(),
            hosts=settings.admin.hosts(),
            body_limit=settings.admin.max_body_bytes,
            upload_limit=settings.files.max_bytes,
        )


def create_app(gateway: GatewayPorts) -> FastAPI:
    app = AdminApp(title="mugai admin API", version="1")
    app.state.gateway = gateway
    app.state.metrics = make_registry(gateway)
    app.state.uploads = {}  # token id → uploads in progress (files.py caps them per token)
    app.middleware("http")(auth_middleware)
    for module in (health, messages, releases, audit, tokens, files, unlock):
        app.include_router(module.router)
    app.include_router(monthly_reports.router)  # issue 16: GET /api/v1/reports/monthly
    console.install(app)  # the web console at / (same store, roles and release flow)
    app.add_exception_handler(Refused, refused)

    @app.middleware("http")
    async def _no_sniff(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app


async def refused(request: Request, exc: Exception) -> Response:
    """The one mapping of a refusal to HTTP: the class gives the status (gateway/errors.py)."""
    assert isinstance(exc, Refused)
    return JSONResponse(exc.body(), status_code=exc.http_status, headers=exc.headers())
