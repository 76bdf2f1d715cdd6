"""Messages: list/search, detail, original (audited), sanitized copy, delete, legal hold."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response

from gateway.api.deps import GatewayDep, GatewayPorts, require
from gateway.api.disposition import content_disposition
from gateway.api.params import SaneDatetime, SearchText
from gateway.api.schemas import (
    ID_PATTERN,
    MAX_LIMIT,
    LegalHoldIn,
    MessageDetail,
    MessageList,
    MessageSummary,
)
from gateway.reasons import Reason, all_reasons
from gateway.store.models import MessageRow
from gateway.store.repository import MessageQuery
from gateway.store.tokens import Principal
from gateway.vocab import MessageStatus

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])

MessageId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@router.get("", response_model=MessageList)
async def list_messages(
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
    status: MessageStatus | None = None,
    message_id: Annotated[SearchText, Query(max_length=1000)] = "",
    sender: Annotated[SearchText, Query(max_length=512)] = "",
    recipient: Annotated[SearchText, Query(max_length=512)] = "",
    since: SaneDatetime | None = None,  # bounded: an overflowing date is 422, not 500
    until: SaneDatetime | None = None,
    reason: Reason | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str, Query(pattern=ID_PATTERN, max_length=64)] = "",
) -> MessageList:
    query = MessageQuery(
        status=status or "",
        message_id=message_id,
        sender=sender,
        recipient=recipient,
        since=since,
        until=until,
        reason=reason.value if reason else "",
        limit=limit,
        cursor=cursor,
    )
    rows = await asyncio.to_thread(gw.store.search, query)
    # The list shows why anything was changed or withheld: the message's and its parts' codes.
    items = [
        MessageSummary.model_validate(r).model_copy(
            update={"reasons": all_reasons(r.reasons, r.parts)}
        )
        for r in rows
    ]
    return MessageList(items=items, next=rows[-1].id if len(rows) == limit else None)


async def _message(gw: GatewayPorts, mugai_id: str) -> MessageRow:
    row = await asyncio.to_thread(gw.store.get, mugai_id)
    if row is None:
        raise HTTPException(404, "message_not_found")
    return row


@router.get("/{mugai_id}", response_model=MessageDetail)
async def get_message(
    mugai_id: MessageId,
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
) -> MessageDetail:
    row = await _message(gw, mugai_id)
    detail = MessageDetail.model_validate(row)
    detail.has_original = await asyncio.to_thread(gw.store.has_blob, mugai_id, "original")
    detail.has_sanitized = await asyncio.to_thread(gw.store.has_blob, mugai_id, "sanitized")
    return detail


def _download(row: MessageRow, data: bytes, suffix: str) -> Response:
    if row.kind == "mail":
        media, name = "message/rfc822", f"{row.id}{suffix}.eml"
    else:
        media, name = "application/octet-stream", row.filename or f"{row.id}{suffix}"
    headers = {"Content-Disposition": content_disposition(name), **_DOWNLOAD_HEADERS}
    return Response(data, media_type=media, headers=headers)


@router.get(
    "/{mugai_id}/original",
    responses={200: {"content": {"message/rfc822": {}}}, 409: {"description": "deleted"}},
)
async def get_original(
    mugai_id: MessageId,
    who: Annotated[Principal, Depends(require("original"))],
    gw: GatewayDep,
) -> Response:
    row = await _message(gw, mugai_id)
    # Audited in the same transaction that reads the bytes: no read without its record.
    data = await asyncio.to_thread(gw.store.read_original, mugai_id, who)
    return _download(row, data, "")


@router.get("/{mugai_id}/sanitized", responses={200: {"content": {"message/rfc822": {}}}})
async def get_sanitized(
    mugai_id: MessageId,
    who: Annotated[Principal, Depends(require("read"))],
    gw: GatewayDep,
) -> Response:
    row = await _message(gw, mugai_id)
    if row.kind != "mail" and not who.can("request"):
        # An uploaded file's rebuilt bytes are the file gateway's, operator only (§4.5).
        raise HTTPException(403, "forbidden")
    data = await asyncio.to_thread(gw.store.blob, mugai_id, "sanitized")
    if data is None:
        raise HTTPException(404, "no_sanitized_copy")
    return _download(row, data, ".sanitized")


@router.delete("/{mugai_id}", response_model=MessageDetail)
async def delete_message(
    mugai_id: MessageId,
    who: Annotated[Principal, Depends(require("delete"))],
    gw: GatewayDep,
) -> MessageDetail:
    row = await asyncio.to_thread(gw.store.delete_message, mugai_id, who)
    return MessageDetail.model_validate(row)


@router.put("/{mugai_id}/legal-hold", response_model=MessageDetail)
async def legal_hold(
    mugai_id: MessageId,
    body: LegalHoldIn,
    who: Annotated[Principal, Depends(require("delete"))],
    gw: GatewayDep,
) -> MessageDetail:
    row = await asyncio.to_thread(gw.store.set_legal_hold, mugai_id, body.hold, who)
    return MessageDetail.model_validate(row)
