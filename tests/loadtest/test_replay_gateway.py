"""Replay through the real gateway (clamd, pipeline, Maildir outbox) with --wait-relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.loadtest.headers import message_id
from tests.loadtest.mails import write_folder
from tests.loadtest.test_replay import parse

pytestmark = pytest.mark.timeout(300)


async def test_replay_through_gateway_to_outbox(
    tmp_path: Path, gateway_factory: Callable[..., Any]
) -> None:
    gw = await gateway_factory(None)  # no relay configured: deliveries go to the outbox Maildir
    outbox = gw.settings.outbox_dir
    datas = write_folder(tmp_path / "src", 4)
    host, port = gw.smtp_address
    report_path = tmp_path / "report.json"

    rc = await asyncio.to_thread(
        run_cmd,
        [
            str(tmp_path / "src"),
            "--to",
            f"{host}:{port}",
            "--rcpt",
            "@town.example.lg.jp",
            "--wait-relay",
            str(outbox),
            "--relay-timeout",
            "120",
            "--json",
            str(report_path),
        ],
    )
    report = json.loads(report_path.read_text())

    assert rc == 0, report
    assert report["accepted"] == 4
    assert report["relay"]["received"] == 4 and report["relay_seconds"] is not None
    delivered = {message_id(p.read_bytes()) for p in Path(outbox).glob("*/*") if p.is_file()}
    assert {message_id(d) for d in datas} <= delivered


def run_cmd(argv: list[str]) -> int:
    from gateway.loadtest.command import run

    return run(parse(*argv))
