"""Token administration over the API (admin); `mugai token …` does the same locally."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from gateway.api.deps import GatewayDep, require
from gateway.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut
from gateway.store.tokens import Principal

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.get("", response_model=TokenList)
async def list_tokens(
    who: Annotated[Principal, Depends(require("tokens"))],
    gw: GatewayDep,
) -> TokenList:
    rows = await asyncio.to_thread(gw.store.list_tokens)
    return TokenList(items=[TokenOut.model_validate(r) for r in rows])


@router.post("", response_model=TokenCreated, status_code=201)
async def create_token(
    body: TokenIn,
    who: Annotated[Principal, Depends(require("tokens"))],
    gw: GatewayDep,
) -> TokenCreated:
    # Issued to the person NAME (created with ROLE when absent; a different role is 409).
    plain, row = await asyncio.to_thread(gw.store.create_token, body.name, body.role, who.actor)
    fields = TokenOut.model_validate(row).model_dump()
    return TokenCreated.model_validate({**fields, "token": plain})


@router.delete("/{token_id}", response_model=TokenList)
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    who: Annotated[Principal, Depends(require("tokens"))],
    gw: GatewayDep,
) -> TokenList:
    rows = await asyncio.to_thread(gw.store.revoke_tokens, str(token_id), who.actor)
    if not rows:
        raise HTTPException(404, "token_not_found")
    return TokenList(items=[TokenOut.model_validate(r) for r in rows])
