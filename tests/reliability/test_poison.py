"""Issue 13 (3): a mail that kills its worker process on every try ends as crash_loop after
3 recoveries (real `mugai serve` processes, killed by the mail and started again); the mails
that were claimed beside it when it struck are delivered, not charged with its crashes."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store.repository import Store, database_url
from tests.e2e.test_restart import GatewayProcess, write_config
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async

pytestmark = pytest.mark.timeout(300)
RCPT = "user@town.example.lg.jp"


class PoisonGateway(GatewayProcess):
    """GatewayProcess running tests/reliability/poison_serve.py instead of gateway.cli."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.log_fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.poison_serve", "serve", "--config",
             str(config)],
            stdout=self.log_fh, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        self.port = self._wait_port()


def message(subject: str) -> bytes:
    return (
        f"From: a@example.com\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def send_all(port: int, subjects: list[str]) -> list[str]:
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        for subject in subjects:
            c.ehlo("client.example.com")
            c.mail("a@example.com")
            c.rcpt(RCPT)
            code, reply = c.data(message(subject))
            assert code == 250, (code, reply)
            ids.append(reply.decode().rsplit(" ", 1)[1])
    return ids


def send_each(port: int, subjects: list[str]) -> tuple[list[str], list[str]]:
    """One session per mail: (ids of those answered 250, subjects still to send). The process
    may be killed by the poison mail at any moment, so a refused connection or a cut session
    leaves the rest for the next run instead of losing track of them."""
    ids: list[str] = []
    for i, subject in enumerate(subjects):
        try:
            ids += send_all(port, [subject])
        except (smtplib.SMTPException, OSError):
            return ids, subjects[i:]
    return ids, []


def wait_exit(proc: subprocess.Popen[bytes], data: Path, poison_id: str) -> int | None:
    """The exit code when the process dies; None once the poison mail has an outcome and the
    process still runs (then it is given 2 s more to die, which it must not)."""
    store = Store(database_url("", data))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc.returncode
            if store.status(poison_id) == "quarantined":
                time.sleep(2)
                return proc.poll()
            time.sleep(0.1)
        return proc.poll()
    finally:
        store.close()


async def test_poison_mail_ends_as_crash_loop(
    tmp_path: Path, smtp_sink: Sink, clamd_address: str
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    write_config(config, data, smtp_sink.address, clamd_address)
    innocent = [f"innocent-{i}" for i in range(6)]
    exits: list[int | None] = []
    gw = PoisonGateway(config, tmp_path / "log0.txt")
    try:
        # Innocent mails before the poison one (with 4 worker slots some may be claimed with
        # it), and more sent to the next run while the poison mail is a suspect.
        ids = await asyncio.to_thread(send_all, gw.port, innocent[:3] + ["POISON-PILL"])
        poison_id = ids[3]
        pending = innocent[3:]
        for n in range(1, 5):
            code = await asyncio.to_thread(wait_exit, gw.proc, data, poison_id)
            exits.append(code)
            if code is None:
                break  # the run survived: the poison mail no longer reached a worker
            gw.log_fh.close()
            gw = PoisonGateway(config, tmp_path / f"log{n}.txt")
            if pending:  # to a run where the poison mail is a suspect, if it lives long enough
                sent, pending = await asyncio.to_thread(send_each, gw.port, pending)
                ids += sent
        # Whatever a killed run could not take goes to the run that held (a mail answered 250
        # by a run that was then killed is in `ids` and must still arrive).
        sent, pending = await asyncio.to_thread(send_each, gw.port, pending)
        ids += sent
        assert pending == [], pending
        store = Store(database_url("", data))

        def all_done() -> bool:
            rows = [store.get(j) for j in ids]
            return all(r is not None and r.status in ("delivered", "quarantined") for r in rows)

        with contextlib.suppress(AssertionError):  # the row assertions below say which
            await eventually_async(all_done, timeout=60, interval=0.2)
        row = store.get(poison_id)
        assert exits == [-9, -9, -9, None], exits  # killed 3 times, then it held
        assert row is not None and row.status == "quarantined", row
        assert row.reasons == ["crash_loop"] and row.detail.startswith("3 "), row.detail
        assert store.blob(poison_id, "original") == message("POISON-PILL")
        assert len(ids) == 7, ids
        others = [store.get(j) for j in ids if j != poison_id]
        assert [r.status if r else None for r in others] == ["delivered"] * 6
        subjects = sorted(m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
                          for m in smtp_sink.messages if b"innocent-" in m.data)  # fmt: skip
        # Every innocent mail arrived (a crash before its outcome was recorded may repeat one:
        # at-least-once delivery), and nothing of the poison mail went out.
        assert set(subjects) == set(innocent), subjects
        assert not any(b"POISON-PILL" in m.data for m in smtp_sink.messages)
        log = (tmp_path / "log3.txt").read_text(errors="replace")
        assert f"job={poison_id} crash loop" in log
        store.close()
    finally:
        gw.terminate()
