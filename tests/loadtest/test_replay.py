"""`mugai replay` against real SMTP peers on loopback port 0.

The command runs in a worker thread with its own event loop (as from the shell), while the
sinks serve on the test's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mailbox
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.loadtest.command import add_parser, run
from gateway.loadtest.headers import message_id
from gateway.loadtest.replay import ID_DOMAIN
from gateway.loadtest.sources import Message, iter_items
from tests.loadtest.mails import eml, write_folder, write_maildir, write_mbox
from tests.plugins.smtp_sink import Sink

pytestmark = pytest.mark.timeout(120)  # the tool must never hang: fail rather than wait


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mugai")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["replay", *argv])


async def replay(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "report.json"
    rc = await asyncio.to_thread(run, parse(*argv, "--json", str(report)))
    return rc, json.loads(report.read_text()) if report.exists() else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _done(report: dict[str, Any]) -> int:
    return report["accepted"] + sum(report["refused"].values()) + sum(report["errors"].values())


async def test_folder_replayed_byte_for_byte(tmp_path: Path, smtp_sink: Sink) -> None:
    src = tmp_path / "src"
    datas = write_folder(src, 8, cc="copy@example.com")
    (src / "README").write_text("not a message\n")

    rc, report = await replay(tmp_path, str(src), "--to", smtp_sink.address, "--concurrency", "3")

    assert rc == 0
    assert report["sent"] == report["accepted"] == len(smtp_sink.messages) == 8
    assert report["skipped"] == 1 and report["skipped_reasons"] == {"not_mail": 1}
    assert report["refused"] == {} and report["errors"] == {}
    assert sorted(m.data for m in smtp_sink.messages) == sorted(datas)
    for m in smtp_sink.messages:
        assert m.mail_from == "sender@example.net"
        assert m.rcpt_tos == ["staff@example.com", "copy@example.com"]
    lat = report["latency"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["msgs_per_s"] > 0
    assert "relay_seconds" not in report


async def test_rcpt_rewrite_mail_from_and_reuse(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 5, to="a@example.com, b@example.org")

    rc, report = await replay(
        tmp_path,
        str(tmp_path / "src"),
        "--to",
        smtp_sink.address,
        "--rcpt",
        "@town.example.lg.jp",
        "--mail-from",
        "",
        "--reuse",
        "3",
    )

    assert rc == 0 and report["accepted"] == 5
    for m in smtp_sink.messages:
        assert m.rcpt_tos == ["a@town.example.lg.jp", "b@town.example.lg.jp"]
        assert m.mail_from == "<>"  # the null sender, as aiosmtpd records it

    smtp_sink.messages.clear()
    rc, report = await replay(
        tmp_path,
        str(tmp_path / "src"),
        "--to",
        smtp_sink.address,
        "--rcpt",
        "clerk@town.example.lg.jp",
    )
    assert rc == 0
    assert {tuple(m.rcpt_tos) for m in smtp_sink.messages} == {("clerk@town.example.lg.jp",)}


async def test_messages_without_recipients_are_skipped(tmp_path: Path, smtp_sink: Sink) -> None:
    (tmp_path / "a.eml").write_bytes(b"From: x@example.net\nSubject: no to\n\nbody\n")
    (tmp_path / "b.eml").write_bytes(eml(1))

    rc, report = await replay(
        tmp_path, str(tmp_path / "a.eml"), str(tmp_path / "b.eml"), "--to", smtp_sink.address
    )

    assert rc == 0
    assert report["accepted"] == len(smtp_sink.messages) == 1
    assert report["skipped_reasons"] == {"no_recipients": 1}


async def test_mbox_and_maildir_sources(tmp_path: Path, smtp_sink: Sink) -> None:
    write_mbox(tmp_path / "list.mbox", 4)
    write_maildir(tmp_path / "Maildir", 3)

    rc, report = await replay(
        tmp_path, str(tmp_path / "list.mbox"), str(tmp_path / "Maildir"), "--to", smtp_sink.address
    )

    assert rc == 0 and report["accepted"] == len(smtp_sink.messages) == 7
    from_mbox = [m.data for m in smtp_sink.messages if b">From the minutes" in m.data]
    assert len(from_mbox) == 4


async def test_refusals_counted_by_code(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 4)
    smtp_sink.data_reply = "451 4.3.0 try later"

    rc, report = await replay(
        tmp_path, str(tmp_path / "src"), "--to", smtp_sink.address, "--reuse", "10"
    )

    assert rc == 1
    assert report["sent"] == 4 and report["accepted"] == 0
    assert report["refused"] == {"451": 4} and report["errors"] == {}
    assert smtp_sink.messages == []


async def test_partial_recipient_refusal(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 3, to="ok@example.com, gone@example.com")
    smtp_sink.rcpt_replies["gone@example.com"] = "550 5.1.1 no such user"

    rc, report = await replay(tmp_path, str(tmp_path / "src"), "--to", smtp_sink.address)

    assert rc == 1
    assert report["accepted"] == len(smtp_sink.messages) == 3
    assert report["refused_recipients"] == {"550": 3}
    assert all(m.rcpt_tos == ["ok@example.com"] for m in smtp_sink.messages)


async def test_closed_port(tmp_path: Path) -> None:
    write_folder(tmp_path / "src", 3)

    rc, report = await replay(tmp_path, str(tmp_path / "src"), "--to", f"127.0.0.1:{free_port()}")

    assert rc == 1
    assert report["sent"] == 3 and report["accepted"] == 0
    assert report["errors"] == {"connect_refused": 3}


async def test_gateway_disappears_mid_run(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 20)

    async def vanish() -> None:
        await smtp_sink.wait_for(3)
        assert smtp_sink.server is not None
        smtp_sink.server.close()

    killer = asyncio.create_task(vanish())
    rc, report = await replay(
        tmp_path,
        str(tmp_path / "src"),
        "--to",
        smtp_sink.address,
        "--concurrency",
        "2",
        "--rate",
        "200",
    )
    await killer

    assert rc == 1
    assert report["sent"] == 20 == _done(report)
    assert report["accepted"] == len(smtp_sink.messages) >= 3
    assert report["errors"].get("connect_refused", 0) >= 1


async def scripted_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


@pytest.fixture
async def hangs_up() -> AsyncIterator[int]:
    """Greets, answers EHLO, then drops the connection at MAIL FROM."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith((b"EHLO", b"HELO")):
                writer.write(b"250 fake\r\n")
                await writer.drain()
            else:
                break
        writer.close()

    async for port in scripted_server(handle):
        yield port


@pytest.fixture
async def goes_silent() -> AsyncIterator[int]:
    """Greets, answers EHLO, then never answers again."""
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        line = await reader.readline()
        if line:
            writer.write(b"250 fake\r\n")
            await writer.drain()
        await stop.wait()
        writer.close()

    async for port in scripted_server(handle):
        yield port
    stop.set()


async def test_disconnect_during_transaction(tmp_path: Path, hangs_up: int) -> None:
    write_folder(tmp_path / "src", 3)

    rc, report = await replay(tmp_path, str(tmp_path / "src"), "--to", f"127.0.0.1:{hangs_up}")

    assert rc == 1
    assert report["errors"] == {"disconnected": 3}


async def test_silent_server_times_out(tmp_path: Path, goes_silent: int) -> None:
    write_folder(tmp_path / "src", 2)

    rc, report = await replay(
        tmp_path, str(tmp_path / "src"), "--to", f"127.0.0.1:{goes_silent}", "--smtp-timeout", "0.3"
    )

    assert rc == 1
    assert report["errors"] == {"timeout": 2}


async def test_whole_run_bounded_by_timeout(tmp_path: Path, goes_silent: int) -> None:
    write_folder(tmp_path / "src", 6)

    rc, report = await replay(
        tmp_path,
        str(tmp_path / "src"),
        "--to",
        f"127.0.0.1:{goes_silent}",
        "--concurrency",
        "2",
        "--timeout",
        "0.5",
    )

    assert rc == 1
    assert report["timed_out"] is True
    assert report["errors"] == {"aborted": 2}  # the two in flight; the rest never started
    assert report["sent"] == 2


async def test_loop_gives_fresh_message_ids(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 3)

    rc, report = await replay(
        tmp_path, str(tmp_path / "src"), "--to", smtp_sink.address, "--loop", "--limit", "10"
    )

    assert rc == 0 and report["accepted"] == len(smtp_sink.messages) == 10
    ids = [message_id(m.data) for m in smtp_sink.messages]
    assert len(set(ids)) == 10
    assert all(i is not None and i.endswith("@" + ID_DOMAIN) for i in ids)
    for m in smtp_sink.messages:
        assert m.data.count(b"Message-ID:") == 1


async def test_limit_and_rate(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path / "src", 9)

    rc, report = await replay(
        tmp_path, str(tmp_path / "src"), "--to", smtp_sink.address, "--limit", "6", "--rate", "20"
    )

    assert rc == 0
    assert report["sent"] == report["accepted"] == len(smtp_sink.messages) == 6
    # Six at 20/s: the last starts at least 5 intervals (0.25 s) after the first. A noisy machine
    # only slows a run down, so the rate may come out lower but never above 1.5x the request.
    assert report["duration_s"] >= 5 / 20 * 0.95
    assert report["msgs_per_s"] <= 1.5 * 20


async def test_plain_progress_and_summary_when_not_a_tty(
    tmp_path: Path, smtp_sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "src", 3)

    rc = await asyncio.to_thread(run, parse(str(tmp_path / "src"), "--to", smtp_sink.address))

    out = capsys.readouterr().out
    assert rc == 0
    assert "replay: 3/3 sent, 3 accepted, 0 refused, 0 errors, 0 skipped" in out
    assert "\x1b[" not in out  # no terminal control sequences in logs
    assert "latency p50/p95/p99" in out and "msgs/s" in out


async def test_json_to_stdout(
    tmp_path: Path, smtp_sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "src", 2)

    rc = await asyncio.to_thread(
        run, parse(str(tmp_path / "src"), "--to", smtp_sink.address, "--json", "-")
    )

    assert rc == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--to", "nowhere"],
        ["--to", "127.0.0.1:25", "--loop"],
        ["--to", "127.0.0.1:25", "--concurrency", "0"],
        ["--to", "127.0.0.1:25", "--rcpt", "nobody"],
        ["--to", "127.0.0.1:25", "--wait-relay", "smtp://nohost"],
    ],
)
async def test_usage_errors(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "a.eml").write_bytes(eml(1))
    assert await asyncio.to_thread(run, parse(str(tmp_path / "a.eml"), *argv)) == 2
    assert await asyncio.to_thread(run, parse(str(tmp_path / "missing"), "--to", "h:25")) == 2


class Forwarder:
    """Stands in for the gateway: accepts, answers 250, delivers afterwards (as a queue does)."""

    def __init__(self, deliver: Callable[[Envelope], Awaitable[None]], skip: int = 0) -> None:
        self._deliver = deliver
        self._skip = skip  # the first `skip` messages are "quarantined": never delivered
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._skip > 0:
            self._skip -= 1
        else:
            task = asyncio.create_task(self._deliver(envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return "250 2.0.0 queued"


async def start_forwarder(fwd: Forwarder) -> tuple[asyncio.base_events.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(fwd, decode_data=False), "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_wait_relay_smtp_sink(tmp_path: Path) -> None:
    write_folder(tmp_path / "src", 5)
    relay_port = free_port()

    async def deliver(env: Envelope) -> None:
        for _ in range(100):  # the replay sink starts once the command is running
            try:
                await aiosmtplib.send(
                    env.original_content or b"",
                    sender=str(env.mail_from),
                    recipients=list(env.rcpt_tos),
                    hostname="127.0.0.1",
                    port=relay_port,
                    timeout=10,
                    start_tls=False,
                )
                return
            except aiosmtplib.SMTPConnectError:
                await asyncio.sleep(0.05)

    server, port = await start_forwarder(Forwarder(deliver))
    try:
        rc, report = await replay(
            tmp_path,
            str(tmp_path / "src"),
            "--to",
            f"127.0.0.1:{port}",
            "--wait-relay",
            f"smtp://127.0.0.1:{relay_port}",
        )
    finally:
        server.close()

    assert rc == 0
    assert report["relay"]["expected"] == report["relay"]["received"] == 5
    assert report["relay"]["missing"] == 0
    assert report["relay_seconds"] is not None and report["relay_seconds"] >= 0


async def test_wait_relay_maildir_reports_missing(tmp_path: Path) -> None:
    write_folder(tmp_path / "src", 4)
    outbox = tmp_path / "outbox"
    box = mailbox.Maildir(str(outbox), create=True)
    box.add(eml(999))  # from an earlier run: must not count

    async def deliver(env: Envelope) -> None:
        await asyncio.to_thread(box.add, env.original_content or b"")

    server, port = await start_forwarder(Forwarder(deliver, skip=1))
    try:
        rc, report = await replay(
            tmp_path,
            str(tmp_path / "src"),
            "--to",
            f"127.0.0.1:{port}",
            "--wait-relay",
            str(outbox),
            "--relay-timeout",
            "3",
        )
    finally:
        server.close()

    assert rc == 1  # one message never reached the relay
    assert report["accepted"] == 4
    assert report["relay"] == {"watch": str(outbox), "expected": 4, "received": 3, "missing": 1}
    assert report["relay_seconds"] is None


@pytest.mark.corpus
async def test_corpus_mail_ja(tmp_path: Path, corpus: Path, smtp_sink: Sink) -> None:
    source = corpus / "mail-ja"
    messages = [i for i in iter_items([source]) if isinstance(i, Message)]

    rc, report = await replay(
        tmp_path,
        str(source),
        "--to",
        smtp_sink.address,
        "--rcpt",
        "@town.example.lg.jp",
        "--concurrency",
        "8",
    )

    assert rc == 0
    assert report["skipped"] == 0
    assert report["sent"] == report["accepted"] == len(smtp_sink.messages) == len(messages)
    sent_ids = {message_id(m.data) for m in smtp_sink.messages}
    assert {message_id(m.data) for m in messages if message_id(m.data)} <= sent_ids
