"""The audit log (auditor, admin): newest first, cursor = the last seq seen."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gateway.api.deps import GatewayDep, require
from gateway.api.params import SearchText
from gateway.api.schemas import MAX_LIMIT, AuditEntry, AuditList
from gateway.store.tokens import Principal

router = APIRouter(tags=["audit"])


@router.get("/api/v1/audit", response_model=AuditList)
async def audit_log(
    who: Annotated[Principal, Depends(require("audit"))],
    gw: GatewayDep,
    action: Annotated[SearchText, Query(max_length=64)] = "",
    target: Annotated[SearchText, Query(max_length=128)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str, Query(pattern=r"^[0-9]{1,18}$")] = "",
) -> AuditList:
    rows = await asyncio.to_thread(
        lambda: gw.store.audit_entries(
            before=int(cursor or 0), limit=limit, action=action, target=target
        )
    )
    items = [AuditEntry.model_validate(r) for r in rows]
    return AuditList(items=items, next=str(rows[-1].seq) if len(rows) == limit else None)
