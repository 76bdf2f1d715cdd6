"""Approve → deliver the original through the relay → record the outcome.

Shared by the API route and the web console so both follow exactly the same two-person rule
and leave the same audit trail. Store refusals (``StoreError``) propagate to the caller; a relay
failure never does: it is recorded as a failed release, which can be approved again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from typing import Any

from gateway.errors import MugaiError
from gateway.relay import Relay
from gateway.store.models import ReleaseRequestRow
from gateway.store.repository import Store
from gateway.store.tokens import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReleaseOutcome:
    request: ReleaseRequestRow  # re-read after finishing: status released or failed
    ok: bool


def released_copy(original: bytes, approver: str) -> bytes:
    """The original, untouched, under one added header naming who released it."""
    newline = b"\r\n" if b"\r\n" in original[:4096] else b"\n"
    # Names are validated word characters; non-ASCII ones are RFC 2047 encoded.
    value = Header(approver, "utf-8").encode() if not approver.isascii() else approver
    return b"X-Mugai-Released-By: " + value.encode("ascii") + newline + original


async def approve_and_send(
    store: Store,
    relay: Relay,
    rid: str,
    who: Principal,
    rcpt_tos: Sequence[str] | None = None,
    reason: str = "",
    confirm_signature: str = "",
) -> ReleaseOutcome:
    req, msg, original = await asyncio.to_thread(
        lambda: store.approve_release(
            rid, who, rcpt_tos, reason, confirm_signature=confirm_signature
        )
    )
    attempt = req.attempt
    data = released_copy(original, who.name)
    result: dict[str, Any]
    try:
        sent = await relay.send(msg.mail_from, tuple(req.rcpt_tos), data)
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
    recorded = await asyncio.to_thread(store.finish_release, rid, who, attempt, ok, result)
    if not recorded:
        # Another approval took over (this one was given up for dead): not recorded twice.
        log.warning("job=%s release request=%s attempt=%s superseded", msg.id, rid, attempt)
        ok = False
    log.info("job=%s release request=%s by=%s ok=%s", msg.id, rid, who.name, ok)
    row = await asyncio.to_thread(store.release_request, rid)
    assert row is not None  # it was just updated in this very flow
    return ReleaseOutcome(row, ok)
