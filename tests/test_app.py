"""The composition root: the gateway owns its timers (retention runs without the admin API),
and its sanitizer registry is injected, never patched in as a global."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize.base import Context
from gateway.sanitize.registry import REGISTRY
from tests.e2e.test_mail_flow import queue_id, wait_status
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async


def _mail() -> bytes:
    m = EmailMessage()
    m["From"] = "sender@example.com"
    m["To"] = "user@town.example.lg.jp"
    m["Subject"] = "retention"
    m.set_content("本文です。")
    m.add_attachment(b"memo\n", maintype="text", subtype="plain", filename="memo.txt")
    return m.as_bytes()


async def test_retention_runs_in_the_gateway_without_the_admin_api(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink, retention={"delivered": "0s", "interval": "1s"})
    job_id = queue_id(await asend(gw, _mail()))
    # Either the timer removes the record at once after delivery, or we see it delivered first.
    seen = set()

    async def purged() -> bool:
        row = await asyncio.to_thread(gw.store.get, job_id)
        if row is None and smtp_sink.messages:
            return True
        if row is not None:
            seen.add(row.status)
        gw.wakeup.set()
        return False

    with contextlib.suppress(AssertionError):  # the assertions below say what was seen
        await eventually_async(purged, timeout=60)
    assert await asyncio.to_thread(gw.store.get, job_id) is None, seen
    assert len(smtp_sink.messages) == 1
    assert any(e.action == "retention.purge" for e in gw.store.audit_entries())


async def test_the_registry_is_injected_per_gateway(gateway_factory: Any, smtp_sink: Sink) -> None:
    used: list[str] = []

    def marking(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        used.append(filename)
        return SanitizeResult(
            files=(CleanFile("memo.txt", "text/plain", "差し替え済み\n".encode()),),
            action=Action.KEPT,
        )

    injected = await gateway_factory(smtp_sink, registry={**REGISTRY, "text": marking})
    row = await wait_status(injected, queue_id(await asend(injected, _mail())), {"delivered"})
    assert row.status == "delivered" and used == ["memo.txt"]
    delivered = message_from_bytes(smtp_sink.messages[0].data, policy=email.policy.default)
    memo = [p for p in delivered.walk() if p.get_filename() == "memo.txt"]
    assert [p.get_content().strip() for p in memo] == ["差し替え済み"]
    # The default registry object is untouched: another gateway sanitizes as before.
    assert REGISTRY["text"] is not marking
