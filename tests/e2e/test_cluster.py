"""Two nodes, each with its own spool, on one real PostgreSQL (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.server import start_admin
from gateway.store.repository import Store
from tests.e2e.test_mail_flow import RCPT, japanese_mail, queue_id, wait_status
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink, start_sink
from tests.store.backends import pg_database, reset_pg  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _empty_database(pg_database: str) -> None:  # noqa: F811
    # Each test is a fresh installation: its own audit key, so an empty audit log.
    store = Store(pg_database)
    reset_pg(store)
    store.close()


async def test_message_received_on_a_is_reviewed_and_released_from_b(
    gateway_factory: Any,
    smtp_sink: Sink,
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    sink_b = await start_sink()
    node_a = await gateway_factory(
        smtp_sink,
        storage={"data_dir": str(tmp_path / "a"), "database_url": pg_database},
        audit={"key_file": str(tmp_path / "audit.key")},  # one key for every node
    )
    node_b = await gateway_factory(
        sink_b,
        storage={"data_dir": str(tmp_path / "b"), "database_url": pg_database},
        audit={"key_file": str(tmp_path / "audit.key")},
    )
    assert node_a.spool.root != node_b.spool.root
    admin_b = await start_admin(node_b.settings, node_b)
    try:
        operator, _ = node_b.store.create_token("tanaka", "operator", "test")
        approver, _ = node_a.store.create_token("suzuki", "approver", "test")  # made on A
        op = {"Authorization": f"Bearer {operator}"}
        ap = {"Authorization": f"Bearer {approver}"}
        mail = japanese_mail().replace(b"<ja-1@", b"<cluster-%d@" % time.time_ns())
        job_id = queue_id(await asend(node_a, mail, rcpt=RCPT))
        await wait_status(node_a, job_id, {"delivered"})
        message_id = mail.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{admin_b.port}", timeout=60
        ) as client:
            r = await client.get("/api/v1/messages", params={"message_id": message_id}, headers=op)
            assert r.status_code == 200, r.text
            [item] = r.json()["items"]
            assert item["id"] == job_id and item["status"] == "delivered"
            r = await client.get(f"/api/v1/messages/{job_id}/original", headers=op)
            assert r.status_code == 200 and r.content == mail
            r = await client.post(
                f"/api/v1/messages/{job_id}/release-requests",
                json={"reason": "業務上必要なため原本を確認", "category": "business_required"},
                headers=op,
            )
            assert r.status_code in (200, 201), r.text
            rid = r.json()["id"]
            r = await client.post(f"/api/v1/release-requests/{rid}/approve", json={}, headers=op)
            assert r.status_code == 403  # the requester alone cannot release
            r = await client.post(f"/api/v1/release-requests/{rid}/approve", json={}, headers=ap)
            assert r.status_code == 200, r.text
        [released] = await sink_b.wait_for(1)
        assert released.rcpt_tos == [RCPT]
        assert released.data.endswith(mail)
        assert b"X-Mugai-Released-By: suzuki" in released.data
        assert node_a.store.status(job_id) == "released"
        assert node_a.store.verify_audit().ok and node_b.store.verify_audit().ok
    finally:
        await admin_b.stop()
        assert sink_b.server is not None
        sink_b.server.close()


async def test_concurrent_nodes_keep_one_audit_chain(
    gateway_factory: Any,
    smtp_sink: Sink,
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    nodes = [
        await gateway_factory(
            smtp_sink,
            storage={"data_dir": str(tmp_path / f"n{i}"), "database_url": pg_database},
            audit={"key_file": str(tmp_path / "audit.key")},
        )
        for i in range(2)
    ]
    ids = await asyncio.gather(
        *[asend(nodes[i % 2], japanese_mail(), rcpt=RCPT) for i in range(10)]
    )
    for i, reply in enumerate(ids):
        await wait_status(nodes[i % 2], queue_id(reply), {"delivered"})

    def read_originals(node: Any, who: str) -> None:
        from gateway.store.tokens import Principal

        principal = Principal(token_id=0, name=who, role="operator")
        for reply in ids:
            node.store.read_original(queue_id(reply), principal)

    await asyncio.gather(
        asyncio.to_thread(read_originals, nodes[0], "a"),
        asyncio.to_thread(read_originals, nodes[1], "b"),
    )
    report = nodes[0].store.verify_audit()
    assert report.ok, report
    reads = nodes[1].store.audit_entries(action="original.read", limit=500)
    assert len({(e.actor, e.target) for e in reads}) >= 20
