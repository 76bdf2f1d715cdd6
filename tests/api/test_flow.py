"""The issue's "done when", end to end: mail in over SMTP through a real gateway (real clamd,
real relay sink), then the admin API on a real uvicorn listener (port 0)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from gateway.admin_cli import add_parsers
from gateway.api.server import start_admin
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink
from tests.store.tamper import tampering

MAIL = (
    "From: 取引先 <partner@example.com>\r\n"
    "To: staff@town.example.lg.jp\r\n"
    "Subject: =?UTF-8?B?6KaL56mN5pu4?=\r\n"
    "Message-ID: <flow-1@example.com>\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>見積書を送ります <a href='http://evil.example/x'>link</a></p>\r\n"
).encode()


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mugai")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


async def test_find_download_request_approve_audit(
    gateway_factory: Callable[..., Any],
    smtp_sink: Sink,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg = not store_url.startswith("sqlite")
    storage = {"database_url": store_url} if pg else {}
    gw = await gateway_factory(smtp_sink, storage=storage)
    config = tmp_path / "gateway.toml"
    data_dir = gw.settings.storage.data_dir
    config.write_text(
        f'[storage]\ndata_dir = "{data_dir}"\ndatabase_url = "{store_url if pg else ""}"\n',
        encoding="utf-8",
    )
    tokens = {}
    for name, role in (("tanaka", "operator"), ("suzuki", "approver"), ("kansa", "auditor")):
        assert (
            cli(["token", "create", "--config", str(config), "--role", role, "--name", name]) == 0
        )
        tokens[name] = capsys.readouterr().out.strip().splitlines()[-1]

    await asend(gw, MAIL, rcpt="staff@town.example.lg.jp", mail_from="partner@example.com")
    await smtp_sink.wait_for(1)  # the sanitized copy
    sanitized = smtp_sink.messages[0].data
    assert b"<p>" not in sanitized

    admin = await start_admin(gw.settings, gw)
    try:
        base = f"http://127.0.0.1:{admin.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:

            def h(name: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {tokens[name]}"}

            assert (await c.get("/api/v1/messages")).status_code == 401
            r = await c.get(
                "/api/v1/messages", headers=h("tanaka"), params={"message_id": "flow-1@example.com"}
            )
            items = r.json()["items"]
            assert len(items) == 1 and items[0]["status"] == "delivered"
            mid = items[0]["id"]
            detail = (await c.get(f"/api/v1/messages/{mid}", headers=h("tanaka"))).json()
            assert detail["parts"] and detail["scan"]
            original = await c.get(f"/api/v1/messages/{mid}/original", headers=h("tanaka"))
            assert original.status_code == 200 and original.content == MAIL
            r = await c.post(
                f"/api/v1/messages/{mid}/release-requests",
                headers=h("tanaka"),
                json={"reason": "リンク先の確認が必要", "category": "other"},
            )
            rid = r.json()["id"]
            # The requester alone cannot release (even an approver could not decide their own).
            r = await c.post(f"/api/v1/release-requests/{rid}/approve", headers=h("tanaka"))
            assert r.status_code == 403
            # The auditor reads the log and does nothing else.
            r = await c.post(f"/api/v1/release-requests/{rid}/approve", headers=h("kansa"))
            assert r.status_code == 403
            r = await c.post(f"/api/v1/release-requests/{rid}/approve", headers=h("suzuki"))
            assert r.status_code == 200 and r.json()["status"] == "released"
            await smtp_sink.wait_for(2)
            released = smtp_sink.messages[1]
            assert released.rcpt_tos == ["staff@town.example.lg.jp"]
            assert released.data == b"X-Mugai-Released-By: suzuki\r\n" + MAIL
            log = (await c.get("/api/v1/audit", headers=h("kansa"))).json()["items"]
            actions = [e["action"] for e in reversed(log)]
            assert actions[-4:] == [
                "original.read",
                "release.request",
                "release.approve",
                "release.delivered",
            ]
            assert (await c.get("/api/v1/audit", headers=h("tanaka"))).status_code == 403
            metrics = (await c.get("/metrics")).text
            assert 'mugai_messages{status="released"} 1.0' in metrics
    finally:
        await admin.stop()

    assert cli(["audit", "verify", "--config", str(config)]) == 0
    with tampering(gw.store) as conn:
        conn.execute(
            text("UPDATE audit_log SET actor = 'token:nobody' WHERE action = 'original.read'")
        )
    assert cli(["audit", "verify", "--config", str(config)]) == 1
    assert "hash mismatch (row edited)" in capsys.readouterr().out
