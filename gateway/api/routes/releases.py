"""Two-person release: an operator asks with a reason; another person (approver) decides.

Approval delivers the ORIGINAL bytes, with ``X-Mugai-Released-By`` on top, through the
gateway's relay to the original recipients (or a chosen subset of them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from gateway.api.deps import GatewayDep, require
from gateway.api.release_flow import approve_and_send
from gateway.api.schemas import (
    ID_PATTERN,
    MAX_LIMIT,
    ApproveIn,
    RejectIn,
    ReleaseRequestIn,
    ReleaseRequestList,
    ReleaseRequestOut,
    ReopenIn,
)
from gateway.errors import Conflict
from gateway.store.tokens import Principal
from gateway.vocab import ReleaseStatus

log = logging.getLogger(__name__)
router = APIRouter(tags=["releases"])

Rid = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]


@router.post(
    "/api/v1/messages/{mugai_id}/release-requests",
    response_model=ReleaseRequestOut,
    status_code=201,
)
async def request_release(
    mugai_id: Rid,
    body: ReleaseRequestIn,
    who: Annotated[Principal, Depends(require("request"))],
    gw: GatewayDep,
) -> Any:
    try:
        row = await asyncio.to_thread(
            lambda: gw.store.request_release(
                mugai_id, body.reason, who, kind=body.kind,
                category=body.category.value if body.category else "",
                confirm_signature=body.confirm_signature,
            )
        )  # fmt: skip
    except Conflict as exc:
        if exc.detail:  # the open (or released) request that blocks this one
            return conflict_with_request(exc)
        raise
    log.info("job=%s release requested request=%s by=%s", mugai_id, row.id, who.name)
    return ReleaseRequestOut.model_validate(row)


def conflict_with_request(exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": exc.reason, "request": exc.detail}, status_code=409)


@router.post(
    "/api/v1/messages/{mugai_id}/release-reopen",
    response_model=ReleaseRequestOut,
    responses={409: {"description": "the message has no release to reopen"}},
)
async def reopen_release(
    mugai_id: Rid,
    body: ReopenIn,
    who: Annotated[Principal, Depends(require("reopen"))],
    gw: GatewayDep,
) -> ReleaseRequestOut:
    """Admin only: a released message may be released once more (audited with the reason)."""
    row = await asyncio.to_thread(gw.store.reopen_release, mugai_id, who, body.reason)
    log.info("job=%s release reopened request=%s by=%s", mugai_id, row.id, who.name)
    return ReleaseRequestOut.model_validate(row)


@router.get("/api/v1/release-requests", response_model=ReleaseRequestList)
async def list_requests(
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
    status: ReleaseStatus | None = None,
    message: Annotated[str, Query(pattern=ID_PATTERN, max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str, Query(pattern=ID_PATTERN, max_length=64)] = "",
) -> ReleaseRequestList:
    rows = await asyncio.to_thread(
        lambda: gw.store.release_requests(
            status=status or "", message=message, limit=limit, cursor=cursor
        )
    )
    items = [ReleaseRequestOut.model_validate(r) for r in rows]
    return ReleaseRequestList(items=items, next=rows[-1].id if len(rows) == limit else None)


@router.get("/api/v1/release-requests/{rid}", response_model=ReleaseRequestOut)
async def get_request(
    rid: Rid,
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
) -> ReleaseRequestOut:
    row = await asyncio.to_thread(gw.store.release_request, rid)
    if row is None:
        raise HTTPException(404, "request_not_found")
    return ReleaseRequestOut.model_validate(row)


@router.post(
    "/api/v1/release-requests/{rid}/approve",
    response_model=ReleaseRequestOut,
    responses={
        502: {"description": "the relay did not take the original"},
        409: {"description": "not approvable (already approved, released, rejected, ...)"},
        403: {"description": "own request, or an infected original without allow_infected"},
    },
)
async def approve(
    rid: Rid,
    who: Annotated[Principal, Depends(require("decide"))],
    gw: GatewayDep,
    body: Annotated[ApproveIn | None, Body()] = None,
) -> Any:
    body = body or ApproveIn()
    outcome = await approve_and_send(
        gw.store,
        gw.relay,
        gw.scanner,
        rid,
        who,
        body.rcpt_tos,
        body.reason,
        body.confirm_signature,
    )
    out = ReleaseRequestOut.model_validate(outcome.request)
    if not outcome.ok:
        return JSONResponse(out.model_dump(mode="json"), status_code=502)
    return out


@router.post("/api/v1/release-requests/{rid}/reject", response_model=ReleaseRequestOut)
async def reject(
    rid: Rid,
    who: Annotated[Principal, Depends(require("decide"))],
    gw: GatewayDep,
    body: Annotated[RejectIn | None, Body()] = None,
) -> ReleaseRequestOut:
    body = body or RejectIn()
    row = await asyncio.to_thread(gw.store.reject_release, rid, who, body.reason)
    return ReleaseRequestOut.model_validate(row)
