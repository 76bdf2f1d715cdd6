"""FastAPI application factory for the admin API and console."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from gateway.app import Gateway


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="mugai admin API", version="1")
    app.state.gateway = gateway

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            checks["spool"] = await asyncio.to_thread(gateway.spool.depth) >= 0
        except OSError:
            checks["spool"] = False
        try:
            checks["database"] = await asyncio.to_thread(gateway.store.status, "-") is None
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = False
        checks["clamd"] = await gateway.scanner.ping()
        checks["relay"] = await gateway.relay.ping()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
