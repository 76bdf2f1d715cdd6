"""Two-person release: an operator asks with a reason; another person (approver) decides.

Approval delivers the ORIGINAL bytes, with ``X-Mugai-Released-By`` on top, through the
gateway's relay to the original recipients (or a chosen subset of them).
"""

from __future__ import annotations

import asyncio
import logging
from email.header import Header
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from gateway.api.deps import GatewayDep, http_error, require
from gateway.api.schemas import (
    ID_PATTERN,
    MAX_LIMIT,
    ApproveIn,
    RejectIn,
    ReleaseRequestIn,
    ReleaseRequestList,
    ReleaseRequestOut,
)
from gateway.errors import MugaiError
from gateway.store.errors import StoreError
from gateway.store.tokens import Principal

log = logging.getLogger(__name__)
router = APIRouter(tags=["releases"])

Rid = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
RequestStatus = Literal["pending", "approved", "released", "failed", "rejected"]


def released_copy(original: bytes, approver: str) -> bytes:
    """The original, untouched, under one added header naming who released it."""
    newline = b"\r\n" if b"\r\n" in original[:4096] else b"\n"
    # Names are validated word characters; non-ASCII ones are RFC 2047 encoded.
    value = Header(approver, "utf-8").encode() if not approver.isascii() else approver
    return b"X-Mugai-Released-By: " + value.encode("ascii") + newline + original


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
) -> ReleaseRequestOut:
    try:
        row = await asyncio.to_thread(gw.store.request_release, mugai_id, body.reason, who)
    except StoreError as exc:
        raise http_error(exc) from exc
    log.info("job=%s release requested request=%s by=%s", mugai_id, row.id, who.name)
    return ReleaseRequestOut.model_validate(row)


@router.get("/api/v1/release-requests", response_model=ReleaseRequestList)
async def list_requests(
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
    status: RequestStatus | None = None,
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
    responses={502: {"description": "the relay did not take the original"}},
)
async def approve(
    rid: Rid,
    who: Annotated[Principal, Depends(require("decide"))],
    gw: GatewayDep,
    body: Annotated[ApproveIn | None, Body()] = None,
) -> Any:
    body = body or ApproveIn()
    store = gw.store
    try:
        req, msg, original = await asyncio.to_thread(
            store.approve_release, rid, who, body.rcpt_tos, body.reason
        )
    except StoreError as exc:
        raise http_error(exc) from exc
    data = released_copy(original, who.name)
    result: dict[str, Any]
    try:
        sent = await gw.relay.send(msg.mail_from, tuple(req.rcpt_tos), data)
        result = {
            "accepted": list(sent.accepted),
            "rejected": dict(sent.rejected),
            "deferred": dict(sent.deferred),
        }
        ok = bool(sent.accepted)
    except MugaiError as exc:
        result, ok = {"error": exc.reason, "detail": exc.detail[:500]}, False
    except Exception as exc:  # noqa: BLE001 - recorded as a failed release, never a 500
        log.exception("job=%s release delivery failed", msg.id)
        result, ok = {"error": "internal_error", "detail": type(exc).__name__}, False
    await asyncio.to_thread(store.finish_release, rid, who, ok, result)
    log.info("job=%s release request=%s by=%s ok=%s", msg.id, rid, who.name, ok)
    row = await asyncio.to_thread(store.release_request, rid)
    out = ReleaseRequestOut.model_validate(row)
    if not ok:
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
    try:
        row = await asyncio.to_thread(gw.store.reject_release, rid, who, body.reason)
    except StoreError as exc:
        raise http_error(exc) from exc
    return ReleaseRequestOut.model_validate(row)
