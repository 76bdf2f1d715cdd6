"""kill -9 during a burst, restart: every mail that got a 250 arrives (real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.plugins.smtp_sink import Sink
from tests.store.backends import pg_database  # noqa: F401 - fixture
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(300)
RCPT = "user@town.example.lg.jp"


def write_config(
    path: Path, data_dir: Path, relay: str, clamd: str, database_url: str = ""
) -> None:
    path.write_text(
        f"""
[smtp]
listen = "127.0.0.1:0"
accepted_domains = ["town.example.lg.jp"]
[delivery]
relay = "{relay}"
retry_schedule = ["1s"]
workers = 4
[clamav]
address = "{clamd}"
[storage]
data_dir = "{data_dir}"
database_url = "{database_url}"
[admin]
listen = "127.0.0.1:0"
[sanitize]
office_pool = 0
""",
        encoding="utf-8",
    )


class GatewayProcess:
    """`mugai serve` in its own process; its log tells the port it bound (port 0)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.log_fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            stdout=self.log_fh,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            found = re.search(r"SMTP listening on [\d.]+:(\d+)", text)
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {text[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("gateway did not start")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log_fh.close()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log_fh.close()


def mail(i: int) -> bytes:
    return (
        f"From: a@example.com\r\nTo: {RCPT}\r\nSubject: burst {i}\r\n"
        f"Message-ID: <burst-{i}@example.com>\r\n\r\nmessage number {i}\r\n"
    ).encode()


def burst(port: int, start: int, count: int, accepted: list[int], stop: threading.Event) -> None:
    for i in range(start, start + count):
        if stop.is_set():
            return
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.sendmail("a@example.com", [RCPT], mail(i))
            accepted.append(i)
        except (smtplib.SMTPException, OSError):
            if stop.is_set():
                return


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_kill9_during_burst_loses_nothing(
    tmp_path: Path,
    smtp_sink: Sink,
    clamd_address: str,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    # With PostgreSQL the records of the killed node must not stay "processing" either.
    url = request.getfixturevalue("pg_database") if backend == "postgresql" else ""
    config = tmp_path / "gw.toml"
    write_config(config, tmp_path / "data", smtp_sink.address, clamd_address, url)
    gw = GatewayProcess(config, tmp_path / "gw1.log")
    accepted: list[int] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=burst, args=(gw.port, k * 1000, 150, accepted, stop))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    try:
        with contextlib.suppress(AssertionError):  # a smaller burst is judged below
            await eventually_async(lambda: len(accepted) >= 200, timeout=120, interval=0.05)
        gw.kill9()
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
        acked = set(accepted)
        assert len(acked) >= 50, "burst too small to mean anything"
        gw = GatewayProcess(config, tmp_path / "gw2.log")

        def delivered_ids() -> list[int]:
            ids = []
            for m in smtp_sink.messages:
                msg = email.message_from_bytes(m.data)
                found = re.match(r"<burst-(\d+)@", str(msg["Message-ID"]))
                if found:
                    ids.append(int(found.group(1)))
            return ids

        with contextlib.suppress(AssertionError):  # the assertion below lists the missing
            await eventually_async(lambda: acked <= set(delivered_ids()), timeout=180, interval=0.2)
        got = delivered_ids()
        missing = acked - set(got)
        assert not missing, f"lost {len(missing)} acknowledged mails: {sorted(missing)[:20]}"
        duplicates = len(got) - len(set(got))
        # Duplicates can only come from a kill between relay 250 and the record update.
        assert duplicates <= 4, duplicates
        print(f"acked={len(acked)} delivered={len(set(got))} duplicates={duplicates}")
        # Everything handled: nothing left in the spool of the restarted node.
        spool = tmp_path / "data" / "spool"
        await eventually_async(
            lambda: not any(any((spool / d).iterdir()) for d in ("queue", "active", "deferred")),
            timeout=30,
            interval=0.2,
        )
        if url:
            from gateway.store.repository import Store

            store = Store(url)
            try:
                for i in sorted(acked):
                    rows = store.find(message_id=f"<burst-{i}@example.com>")
                    assert rows and all(r.status == "delivered" for r in rows), (i, rows)
            finally:
                store.close()
    finally:
        stop.set()
        gw.terminate()
