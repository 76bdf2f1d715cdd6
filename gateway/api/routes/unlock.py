"""``POST /api/v1/messages/{id}/unlock {part, password}`` (operator): PPAP unlock.

The body is parsed here rather than by FastAPI's validation on purpose: a validation
error answer echoes the offending input, and the input here contains a password.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.deps import GatewayDep, require
from gateway.api.schemas import ID_PATTERN
from gateway.errors import (
    InternalError,
    MugaiError,
    PartNotFound,
    RelayRejected,
    RelayTemporary,
    RelayTimeout,
    Transient,
    WrongPassword,
)
from gateway.sanitize.decrypt import MAX_PASSWORD_CHARS
from gateway.store.tokens import Principal
from gateway.unlock import PART_PATTERN, Unlocked, unlock
from gateway.vocab import MessageStatus

router = APIRouter(tags=["unlock"])

_MAX_BODY = 16 * 1024
Mid = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]


class UnlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part: str = Field(pattern=PART_PATTERN, max_length=14)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class UnlockOut(BaseModel):
    id: str
    part: str
    status: str
    message_id: str
    accepted: list[str]
    rejected: dict[str, str]
    deferred: dict[str, str]
    outputs: list[str]
    reasons: list[str]


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse({"detail": reason, **extra}, status_code=status, headers=headers)


def _parse(raw: bytes) -> UnlockIn | JSONResponse:
    if len(raw) > _MAX_BODY:
        return _error(413, "body_too_large")
    try:
        return UnlockIn.model_validate(json.loads(raw))
    except (ValueError, ValidationError, RecursionError) as exc:  # RecursionError: [[[[...
        fields = (
            sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            if isinstance(exc, ValidationError)
            else []
        )
        # Names of the bad fields only: never their values.
        return _error(422, "invalid_body", fields=fields)


async def _read_bounded(request: Request) -> bytes:
    # request.body() would read a body of any size into memory before _parse could refuse it.
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_BODY:
            break  # _parse answers 413; the rest is never read
    return bytes(raw)


def _mugai_error(exc: MugaiError, remaining: int | None) -> JSONResponse:
    if isinstance(exc, WrongPassword):
        return _error(422, exc.reason, remaining=remaining)
    if isinstance(exc, PartNotFound):
        return _error(404, exc.reason)
    if isinstance(exc, RelayRejected | RelayTemporary | RelayTimeout):
        return _error(502, exc.reason)
    if isinstance(exc, Transient):  # clamd unreachable, converter busy: try again later
        return _error(503, exc.reason)
    if isinstance(exc, InternalError):
        return _error(500, exc.reason)
    return _error(422, exc.reason)  # virus inside, unsupported, limits, nothing left


def unlocked_out(done: Unlocked) -> UnlockOut:
    reasons: set[str] = set()
    stack = [done.report]
    while stack:
        r = stack.pop()
        reasons.update(r.reasons)
        stack.extend(r.children)
    return UnlockOut(
        id=done.mugai_id,
        part=done.part,
        status=MessageStatus.DELIVERED,
        message_id=done.message_id,
        accepted=list(done.accepted),
        rejected=done.rejected,
        deferred=done.deferred,
        outputs=list(done.outputs),
        reasons=sorted(reasons),
    )


@router.post(
    "/api/v1/messages/{mugai_id}/unlock",
    response_model=UnlockOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": UnlockIn.model_json_schema()}},
        }
    },
    responses={
        404: {"description": "no such message or part"},
        409: {"description": "not an encrypted part, already unlocked, or one under way"},
        422: {"description": "wrong password, virus inside, or nothing could be sanitized"},
        429: {"description": "too many wrong passwords (Retry-After)"},
        502: {"description": "the relay did not take the unlocked message"},
        503: {"description": "clamd unreachable: try again later"},
    },
)
async def unlock_part(
    mugai_id: Mid,
    request: Request,
    who: Annotated[Principal, Depends(require("request"))],
    gw: GatewayDep,
) -> Any:
    body = _parse(await _read_bounded(request))
    if isinstance(body, JSONResponse):
        return body
    try:
        done = await unlock(
            store=gw.store,
            relay=gw.relay,
            scanner=gw.scanner,
            office=getattr(gw, "office", None),
            settings=gw.settings,
            mugai_id=mugai_id,
            part=body.part,
            password=body.password,
            who=who,
        )
    except MugaiError as exc:
        remaining = None
        if isinstance(exc, WrongPassword):
            cfg = gw.settings.unlock
            wrong = await asyncio.to_thread(gw.store.unlock_wrong_count, mugai_id, cfg.window)
            remaining = max(0, cfg.max_wrong_passwords - wrong)
        return _mugai_error(exc, remaining)
    return unlocked_out(done)
