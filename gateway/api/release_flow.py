"""Approve → deliver the original through the relay → record the outcome.

Shared by the API route and the web console so both follow exactly the same two-person rule
and leave the same audit trail. Store refusals (``Refused``) propagate to the caller; a relay
failure never does: it is recorded as a failed release, which can be approved again.

An original is scanned again with clamd (today's signatures) right before it leaves: a mail
quarantined for another reason may never have been scanned (too large for clamd, a crash
loop, held past the queue timeout), or carry what yesterday's signatures missed. A hit is
released only like any infected original (``allow_infected`` and the signature typed back);
an original clamd cannot take is released only when the approver types ``unscanned``; with
clamd down nothing is sent (the request fails and can be approved again later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from typing import Any, Final, Protocol

from gateway.errors import MugaiError, ScannerUnavailable, TooLargeToScan
from gateway.model import ScanResult
from gateway.reasons import Reason
from gateway.relay import Relay
from gateway.store.models import ReleaseRequestRow
from gateway.store.releases import ReleaseKind
from gateway.store.repository import Store
from gateway.store.tokens import Principal

log = logging.getLogger(__name__)

# What the approver types to release an original clamd could not scan (too large).
UNSCANNED_CONFIRMATION: Final = "unscanned"


class Scanner(Protocol):
    async def scan(self, data: bytes) -> ScanResult: ...


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


async def rescan_refusal(
    scanner: Scanner, original: bytes, confirm: str, allow_infected: bool
) -> dict[str, Any] | None:
    """Why the original must not leave now (recorded as the failed release's result), or None."""
    confirm = confirm.strip()
    try:
        found = await scanner.scan(original)
    except TooLargeToScan as exc:
        if confirm.lower() == UNSCANNED_CONFIRMATION:
            return None
        return {"error": Reason.TOO_LARGE_TO_SCAN.value, "detail": exc.detail[:500]}
    except ScannerUnavailable as exc:
        return {"error": exc.reason, "detail": exc.detail[:500]}
    if found.clean:
        return None
    if allow_infected and confirm == found.signature:
        return None
    return {"error": Reason.VIRUS_FOUND.value, "signature": found.signature}


async def approve_and_send(
    store: Store,
    relay: Relay,
    scanner: Scanner,
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
        refusal = None
        if req.kind == ReleaseKind.ORIGINAL:
            refusal = await rescan_refusal(
                scanner, original, confirm_signature, store.policy.allow_infected
            )
        if refusal is not None:
            log.warning("job=%s release request=%s withheld: %s", msg.id, rid, refusal["error"])
            result, ok = refusal, False
        else:
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
