"""SMTP replies of the contract (DESIGN.md §4.3), against the real listener on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import select
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import SpoolError
from gateway.ingress.smtp import start_smtp
from gateway.settings import Settings, load_settings
from gateway.spool import JobMeta, Spool

DOMAIN = "town.example.lg.jp"
MSG = b"From: a@example.com\r\nTo: u@town.example.lg.jp\r\nSubject: hi\r\n\r\nhello\r\n"


class BrokenSpool(Spool):
    """Fault injection only: a spool whose writes fail like a full disk (or a bug)."""

    def __init__(self, root: Path, exc: Exception) -> None:
        super().__init__(root)
        self.exc = exc

    def put(self, meta: JobMeta, data: bytes) -> JobMeta:
        raise self.exc


def settings_for(tmp: Path, **smtp: Any) -> Settings:
    return load_settings(
        None,
        smtp={"listen": "127.0.0.1:0", "accepted_domains": [DOMAIN], **smtp},
        storage={"data_dir": str(tmp)},
    )


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.base_events.Server] = []

    async def start(spool: Spool | None = None, **smtp: Any) -> tuple[int, Spool]:
        settings = settings_for(tmp_path, **smtp)
        spool = spool or Spool(settings.spool_dir)
        server = await start_smtp(settings, spool, asyncio.Event())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1]), spool

    yield start
    for s in servers:
        s.close()


def client(port: int) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, timeout=30)
    c.ehlo("client.example.com")
    return c


async def test_accepts_after_spooling_with_queue_id(listener: Any) -> None:
    port, spool = await listener()

    def run() -> tuple[int, bytes]:
        with client(port) as c:
            c.mail("a@example.com")
            assert c.rcpt(f"user@{DOMAIN}")[0] == 250
            return c.data(MSG)

    code, reply = await asyncio.to_thread(run)
    assert code == 250
    text = reply.decode()
    assert text.startswith("2.0.0 queued as ")
    job_id = text.rsplit(" ", 1)[1]
    # The job file is already durable in queue/ when the 250 arrives.
    path = spool.queue / f"{job_id}.job"
    assert path.exists()
    job = spool.claim()
    assert job is not None and job.id == job_id
    assert job.read() == MSG
    assert job.meta.rcpt_tos == (f"user@{DOMAIN}",)
    assert job.meta.mail_from == "a@example.com"


@pytest.mark.parametrize(
    "rcpt",
    [
        "user@other.example",
        f"user@{DOMAIN}.evil.example",
        f"user%other.example@{DOMAIN}",
        f"@{DOMAIN}:user@other.example",
        f'"user@other.example"@{DOMAIN}',
        f"user!other.example@{DOMAIN}",
        "user",
    ],
)
async def test_relaying_is_refused(listener: Any, rcpt: str) -> None:
    port, _ = await listener()

    def run() -> tuple[int, bytes]:
        with client(port) as c:
            c.mail("a@example.com")
            return c.rcpt(rcpt)

    code, reply = await asyncio.to_thread(run)
    if rcpt.startswith("@"):
        # aiosmtpd refuses source-route syntax itself as a malformed address.
        assert code == 553, (code, reply)
    else:
        assert code == 550 and reply.startswith(b"5.7.1"), (code, reply)


async def test_domain_match_is_case_insensitive(listener: Any) -> None:
    port, _ = await listener()

    def run() -> int:
        with client(port) as c:
            c.mail("a@example.com")
            return c.rcpt("User@TOWN.Example.LG.JP")[0]

    assert await asyncio.to_thread(run) == 250


async def test_size_limits(listener: Any) -> None:
    port, spool = await listener(max_message_bytes=2000)

    def declared() -> tuple[int, bytes]:
        with client(port) as c:
            return c.mail("a@example.com", ["SIZE=5000"])

    code, reply = await asyncio.to_thread(declared)
    assert code == 552 and reply.startswith(b"5.3.4")

    def undeclared() -> tuple[int, bytes]:
        with client(port) as c:
            c.mail("a@example.com")
            c.rcpt(f"user@{DOMAIN}")
            return c.data(MSG + b"x" * 5000 + b"\r\n")

    code, reply = await asyncio.to_thread(undeclared)
    assert code == 552 and reply.startswith(b"5.3.4")
    assert spool.depth() == 0


async def test_recipient_cap(listener: Any) -> None:
    port, _ = await listener(max_recipients=2)

    def run() -> list[int]:
        with client(port) as c:
            c.mail("a@example.com")
            return [c.rcpt(f"u{i}@{DOMAIN}")[0] for i in range(3)]

    assert await asyncio.to_thread(run) == [250, 250, 452]


@pytest.mark.parametrize("exc", [SpoolError("disk full"), RuntimeError("bug")])
async def test_spool_trouble_is_a_tempfail_never_500(
    listener: Any, tmp_path: Path, exc: Exception
) -> None:
    port, _ = await listener(spool=BrokenSpool(tmp_path / "spool", exc))

    def run() -> tuple[int, bytes]:
        with client(port) as c:
            c.mail("a@example.com")
            c.rcpt(f"user@{DOMAIN}")
            return c.data(MSG)

    code, reply = await asyncio.to_thread(run)
    assert code == 451 and reply.startswith(b"4.3.0"), (code, reply)


async def test_backlog_bound_answers_451(listener: Any) -> None:
    port, spool = await listener(max_backlog=1)

    def run() -> list[int]:
        codes = []
        for _ in range(2):
            with client(port) as c:
                c.mail("a@example.com")
                c.rcpt(f"user@{DOMAIN}")
                codes.append(c.data(MSG)[0])
        return codes

    assert await asyncio.to_thread(run) == [250, 451]
    assert spool.depth() == 1


async def test_long_lines_are_accepted(listener: Any) -> None:
    port, spool = await listener()
    body = b"A" * 20_000
    data = MSG + body + b"\r\n"

    def run() -> int:
        with client(port) as c:
            c.mail("a@example.com")
            c.rcpt(f"user@{DOMAIN}")
            return c.data(data)[0]

    assert await asyncio.to_thread(run) == 250
    job = spool.claim()
    assert job is not None and body in job.read()


def _raw_session(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        received = b""
        while b"\r\n221" not in received:  # read until the reply to QUIT
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


@pytest.mark.parametrize("ending", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
async def test_smtp_smuggling_does_not_split_a_message(listener: Any, ending: bytes) -> None:
    port, spool = await listener()
    smuggled = (
        b"MAIL FROM:<admin@"
        + DOMAIN.encode()
        + b">\r\nRCPT TO:<victim@"
        + DOMAIN.encode()
        + b">\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
    )
    payload = (
        b"EHLO client.example.com\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<u@"
        + DOMAIN.encode()
        + b">\r\nDATA\r\nSubject: outer\r\n\r\nfirst"
        + ending
        + smuggled
        + b".\r\nQUIT\r\n"
    )
    replies = await asyncio.to_thread(_raw_session, port, payload)
    assert replies.count(b"250 2.0.0 queued as") == 1, replies
    job = spool.claim()
    assert job is not None
    assert b"smuggled" in job.read()  # stayed inside the one message
    assert job.meta.rcpt_tos == (f"u@{DOMAIN}",)
    assert spool.claim() is None


async def test_too_many_connections_get_421(listener: Any) -> None:
    port, _ = await listener(max_connections=2)

    def run() -> bytes:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for s in socks:
                assert s.recv(1024).startswith(b"220")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
                return third.recv(1024)
        finally:
            for s in socks:
                s.close()

    assert (await asyncio.to_thread(run)).startswith(b"421 4.7.0")


# --- issue 13: connection fairness ----------------------------------------------------------


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return s


def read_reply(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def read_full_reply(s: socket.socket) -> bytes:
    """A whole (possibly multi-line) reply: up to the line whose code is followed by a space.
    b"" at EOF. Lines may arrive together in one segment (EHLO's on a busy machine), so a
    reply is never judged by the first line of a chunk."""
    data = b""
    while True:
        lines = data.split(b"\r\n")
        if any(len(ln) >= 4 and ln[3:4] == b" " for ln in lines[:-1]):
            return data
        chunk = s.recv(1024)
        if not chunk:
            return data
        data += chunk


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1024) == b""
    except ConnectionError:
        return True


async def test_one_client_holding_connections_cannot_lock_out_another(listener: Any) -> None:
    port, spool = await listener(max_connections=6, max_connections_per_client=3)

    def run() -> tuple[bytes, list[bytes], str]:
        held = [connect(port) for _ in range(3)]
        try:
            for s in held:
                assert read_reply(s).startswith(b"220")
            with connect(port) as fourth:
                refused = read_reply(fourth)
            # The holder's own sessions go on: only its new connection was refused.
            noops = []
            for s in held:
                s.sendall(b"NOOP\r\n")
                noops.append(read_reply(s))
            # A second client (another loopback address) still gets in and sends mail.
            with smtplib.SMTP(timeout=30, source_address=("127.0.0.2", 0)) as other:
                other.connect("127.0.0.1", port)
                other.ehlo("other.example.com")
                other.mail("b@example.com")
                other.rcpt(f"u@{DOMAIN}")
                code, reply = other.data(MSG)
                assert code == 250, (code, reply)
            return refused, noops, reply.decode()
        finally:
            for s in held:
                s.close()

    refused, noops, reply = await asyncio.to_thread(run)
    assert refused.startswith(b"421 4.7.0"), refused
    assert all(n.startswith(b"250") for n in noops), noops
    assert reply.startswith("2.0.0 queued as") and spool.depth() == 1


async def test_per_client_slots_are_given_back(listener: Any) -> None:
    port, _ = await listener(max_connections_per_client=1)

    def run() -> list[bytes]:
        greetings = []
        for _ in range(3):  # the slot must come back each time the client leaves
            with connect(port) as s:
                greetings.append(read_reply(s))
                s.sendall(b"QUIT\r\n")
                read_reply(s)
                assert closed(s)
        return greetings

    greetings = await asyncio.to_thread(run)
    assert all(g.startswith(b"220") for g in greetings), greetings


async def test_command_cap_ends_only_that_session(listener: Any) -> None:
    port, _ = await listener(max_commands=5)

    def run() -> tuple[list[bytes], bytes, bool, bytes]:
        with connect(port) as s:
            read_reply(s)
            replies = []
            for _ in range(6):
                s.sendall(b"NOOP\r\n")
                replies.append(read_reply(s))
            gone = closed(s)
        with connect(port) as fresh:
            greeting = read_reply(fresh)
        return replies, replies[-1], gone, greeting

    replies, last, gone, greeting = await asyncio.to_thread(run)
    assert all(r.startswith(b"250") for r in replies[:5]), replies
    assert last.startswith(b"421 4.7.0") and gone, last
    assert greeting.startswith(b"220")


@pytest.mark.parametrize("mid_data", [False, True])
async def test_session_duration_cap(listener: Any, mid_data: bool) -> None:
    """A client that keeps a session alive (NOOPs, or a DATA dribbled a line at a time, each
    within the idle timeout) is cut after max_session_duration; no 250 for a cut DATA."""
    port, spool = await listener(max_session_duration="1s")

    def run() -> bytes:
        with connect(port) as s:
            read_reply(s)
            if mid_data:
                for line in (b"EHLO x\r\n", b"MAIL FROM:<a@example.com>\r\n",
                             f"RCPT TO:<u@{DOMAIN}>\r\n".encode(), b"DATA\r\n"):  # fmt: skip
                    s.sendall(line)
                    reply = read_full_reply(s)
                    if not reply.startswith((b"250", b"354")):
                        return reply  # cut (421) or closed before DATA began: judged below
            seen = b""
            for _ in range(200):
                # Whatever the server said while we paused is read before we send again: a
                # line sent after its 421 and close draws an RST, and Linux then drops the
                # unread 421 (recv fails with ECONNRESET): a race a busy machine can lose.
                if select.select([s], [], [], 0.05)[0]:
                    with contextlib.suppress(OSError):
                        seen = read_full_reply(s)
                    break
                try:
                    s.sendall(b"x-line\r\n" if mid_data else b"NOOP\r\n")
                    if not mid_data:
                        seen = read_full_reply(s)
                except OSError:
                    break
                if seen.startswith(b"421") or (not mid_data and seen == b""):
                    break
            return seen

    seen = await asyncio.to_thread(run)
    assert seen.startswith(b"421 4.7.0"), seen
    assert spool.depth() == 0


async def test_starttls_does_not_leak_a_connection_slot(tmp_path: Path) -> None:
    from tests.ingress.test_tls import self_signed

    cert, key = self_signed(tmp_path)
    settings = load_settings(
        None,
        smtp={"listen": "127.0.0.1:0", "accepted_domains": [DOMAIN], "max_connections": 1},
        storage={"data_dir": str(tmp_path)},
        tls={"cert_file": str(cert), "key_file": str(key)},
    )
    server = await start_smtp(settings, Spool(settings.spool_dir), asyncio.Event())
    port = int(server.sockets[0].getsockname()[1])

    def run() -> list[int]:
        codes = []
        for _ in range(3):
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.starttls(context=ctx)
                codes.append(c.ehlo("client.example.com")[0])
        return codes

    try:
        assert await asyncio.to_thread(run) == [250, 250, 250]
    finally:
        server.close()


async def test_defaults_admit_a_postfix_worth_of_parallel_connections(listener: Any) -> None:
    port, _ = await listener()

    def run() -> list[bytes]:
        socks = [connect(port) for _ in range(20)]  # Postfix's default per destination
        try:
            return [read_reply(s) for s in socks]
        finally:
            for s in socks:
                s.close()

    assert all(g.startswith(b"220") for g in await asyncio.to_thread(run))


async def test_null_sender_is_spooled_empty(listener: Any) -> None:
    port, spool = await listener()

    def run() -> int:
        with client(port) as c:
            c.mail("<>")
            c.rcpt(f"u@{DOMAIN}")
            return c.data(MSG)[0]

    assert await asyncio.to_thread(run) == 250
    job = spool.claim()
    assert job is not None and job.meta.mail_from == ""


@pytest.mark.parametrize(
    ("mail_from", "rcpt"),
    [
        (b"a\x00b@example.com", f"u@{DOMAIN}".encode()),
        (b"a@example.com", f"u\x00v@{DOMAIN}".encode()),
        (b"a\x01@example.com", f"u@{DOMAIN}".encode()),
        (b"a@example.com", f"u\x7f@{DOMAIN}".encode()),
    ],
)
async def test_control_characters_in_the_envelope_are_refused_before_250(
    listener: Any, mail_from: bytes, rcpt: bytes
) -> None:
    # No address may contain them (RFC 5321), and PostgreSQL cannot store a NUL: such a mail
    # was accepted with 250, then its record failed on every try, forever (never delivered,
    # never quarantined).
    port, spool = await listener()
    payload = (
        b"EHLO client.example.com\r\nMAIL FROM:<" + mail_from + b">\r\nRCPT TO:<" + rcpt
        + b">\r\nDATA\r\n" + MSG + b"\r\n.\r\nQUIT\r\n"
    )  # fmt: skip
    received = await asyncio.to_thread(_raw_session, port, payload)
    assert b"\r\n553 " in received, received
    assert b"queued as" not in received
    assert spool.claim() is None
