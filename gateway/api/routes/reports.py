"""The monthly summary CSV over the API (issue 16): the same bytes as `mugai report`.

Auditor and admin only (it lists sender addresses), and each download is itself audited.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from gateway.api.deps import GatewayDep, require
from gateway.report_monthly import collect, parse_month, render
from gateway.store.tokens import Principal

router = APIRouter(tags=["reports"])


@router.get("/api/v1/reports/monthly", response_class=Response)
async def monthly_report(
    who: Annotated[Principal, Depends(require("audit"))],
    gw: GatewayDep,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", max_length=7)],
    encoding: Literal["utf-8-sig", "cp932"] = "utf-8-sig",
) -> Response:
    cfg = gw.settings.report
    try:
        period = parse_month(month, cfg.timezone)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc

    def build() -> bytes:
        gw.store.audit(who.actor, "report.monthly", period.label, {"encoding": encoding})
        return render(collect(gw.store, period, cfg.top_senders), encoding)

    data = await asyncio.to_thread(build)
    charset = "utf-8" if encoding == "utf-8-sig" else "shift_jis"
    return Response(
        data,
        media_type=f"text/csv; charset={charset}",
        headers={
            "Content-Disposition": f'attachment; filename="mugai-{period.label}.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
