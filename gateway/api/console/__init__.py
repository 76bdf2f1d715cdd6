"""The Japanese web console at ``/`` on the admin listener (server-rendered, no script)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from gateway.api.console import unlock
from gateway.api.console.render import SECURITY_HEADERS
from gateway.api.console.routes import (
    ConsoleError,
    SignInRequired,
    on_console_error,
    on_sign_in_required,
    router,
)
from gateway.api.console.session import SessionStore
from gateway.api.console.throttle import LoginNonces, RateLimit

_NOT_CONSOLE = ("/api/", "/healthz", "/readyz", "/metrics")


def install(app: FastAPI) -> None:
    admin = app.state.gateway.settings.admin
    app.state.console_sessions = SessionStore(per_user=admin.sessions_per_user)
    app.state.login_nonces = LoginNonces()
    app.state.login_by_address = RateLimit(admin.login_attempts_per_address, admin.login_window)
    app.state.login_by_token = RateLimit(admin.login_attempts_per_token, admin.login_window)
    app.include_router(router)
    app.include_router(unlock.router)  # PPAP form (gateway/api/console/unlock.py)
    app.add_exception_handler(ConsoleError, on_console_error)
    app.add_exception_handler(SignInRequired, on_sign_in_required)

    @app.middleware("http")
    async def _console_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(_NOT_CONSOLE):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response
