"""Liveness, readiness (spool, database, clamd, relay) and metrics; no token needed."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.deps import GatewayDep
from gateway.api.metrics import exposition
from gateway.sanitize.jail import isolation_status

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gw: GatewayDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        checks["spool"] = await asyncio.to_thread(gw.spool.depth) >= 0
    except OSError:
        checks["spool"] = False
    try:
        checks["database"] = await asyncio.to_thread(gw.store.status, "-") is None
    except Exception:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = False
    checks["clamd"] = await gw.scanner.ping()
    checks["relay"] = await gw.relay.ping()
    # Workers dead or stalled, outcomes the store could not record (issue 13): say which.
    # (API tests pass a small object without workers; the real Gateway always has them.)
    probe = getattr(gw, "worker_problems", None)
    problems: dict[str, str] = {}
    try:
        if probe is not None:
            problems = await probe()
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        problems = {"workers": f"unknown: {type(exc).__name__}"}
    if probe is not None:
        for name in ("workers", "progress", "store_writes", "spool_writes"):
            checks[name] = name not in problems
    # issue 11: converters need their jail; without it nothing can be converted.
    jail_ok, jail_cause = await asyncio.to_thread(
        isolation_status, gw.settings.sanitize.network_isolation
    )
    checks["isolation"] = jail_ok
    ready = all(checks.values())
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if problems:
        body["problems"] = problems
    if not jail_ok:
        body["isolation_cause"] = jail_cause
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body = await asyncio.to_thread(exposition, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
