"""kill -9 of the approving process between approval and the relay's answer: one delivery.

A real child process approves and starts delivering the original to a real SMTP server that
takes the DATA and never answers; the child is killed there. The request stays "approved"
(no delivery recorded), cannot be approved again while it may still be under way, and once the
stale window has passed one new approval delivers it exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.store.models import ReleaseRequestRow
from tests.api.conftest import Api
from tests.plugins.smtp_sink import Sink

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from gateway.api.release_flow import approve_and_send
from gateway.relay import SmtpRelay
from gateway.scan.clamd import ClamdScanner
from gateway.store.repository import Store

url, token, rid, relay, clamd = sys.argv[1:6]
store = Store(url)
who = store.authenticate(token)
assert who is not None
relay = SmtpRelay(relay, hostname="child", timeout=300)
asyncio.run(approve_and_send(store, relay, ClamdScanner(clamd, timeout=30), rid, who))
"""


class HangingSink(Sink):
    """Takes the whole message, then never answers (as if the relay were stuck)."""

    def __init__(self) -> None:
        super().__init__()
        self.got_data = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.got_data.set()
        await asyncio.Event().wait()
        return "250 OK"  # never reached


async def test_kill9_between_approve_and_relay_answer_delivers_once(
    api: Api, seed: Callable[..., str], store_url: str
) -> None:
    store = api.gw.store
    mid = seed(status="quarantined")
    r = await api.post(f"/api/v1/messages/{mid}/release-requests", "operator",
                       json={"reason": "必要", "category": "business_required"})  # fmt: skip
    rid = r.json()["id"]
    hanging = HangingSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(hanging, decode_data=False), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store_url, api.tokens["approver"], rid, f"127.0.0.1:{port}",
         api.gw.scanner.address],
        env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        await asyncio.wait_for(hanging.got_data.wait(), 60)
        os.kill(child.pid, signal.SIGKILL)  # dies waiting for the relay's answer
        assert await asyncio.to_thread(child.wait, 30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        server.close()
    row = store.release_request(rid)
    assert row is not None and row.status == "approved" and row.attempt
    assert store.status(mid) == "quarantined"
    assert store.audit_entries(action="release.delivered") == []
    # Maybe still under way: no second approval, no second delivery.
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 409 and r.json()["detail"] == "request_approved"
    with store.db.write() as s:  # the stale window passes
        req = s.get(ReleaseRequestRow, rid)
        assert req is not None
        req.decided_at = datetime.now(UTC) - timedelta(hours=1)
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver2")
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert len(api.sink.messages) == 1
    r = await api.post(f"/api/v1/release-requests/{rid}/approve", "approver")
    assert r.status_code == 409
    assert len(api.sink.messages) == 1
    assert len(store.audit_entries(action="release.delivered")) == 1
    assert store.verify_audit().ok
