"""SMTP abuse against the real listener: pipelining tricks, command floods, BDAT, slowloris,
recipient floods. Every case ends in a refusal or a single well-formed job, never a crash."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from tests.security.conftest import DOMAIN

pytestmark = pytest.mark.timeout(120)


def session(port: int, payload: bytes, until: bytes = b"221") -> bytes:
    """Send everything in one packet (pipelining, asked for or not); read until ``until``."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        banner = s.recv(1024)
        assert banner.startswith(b"220"), banner
        s.sendall(payload)
        got = b""
        while until not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


def codes(replies: bytes) -> list[int]:
    return [int(line[:3]) for line in replies.split(b"\r\n") if line[:3].isdigit()
            and line[3:4] == b" "]  # fmt: skip


async def test_pipelined_transaction_is_one_job(listener: Any) -> None:
    port, spool = await listener()
    payload = (
        b"EHLO x.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<u@" + DOMAIN.encode()
        + b">\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    )  # fmt: skip
    replies = await asyncio.to_thread(session, port, payload)
    assert replies.count(b"250 2.0.0 queued as") == 1
    assert spool.depth() == 1


@pytest.mark.parametrize(
    ("payload", "refusal"),
    [
        (b"EHLO x\r\nRCPT TO:<u@" + DOMAIN.encode() + b">\r\nDATA\r\n", 503),  # RCPT before MAIL
        (b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nDATA\r\n", 503),  # DATA without RCPT
        (b"EHLO x\r\nDATA\r\n", 503),  # DATA without anything
        (b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nMAIL FROM:<b@example.com>\r\n", 503),
        (b"MAIL FROM:<a@example.com>\r\n", 503),  # no HELO/EHLO
    ],
)
async def test_out_of_order_commands_are_refused(
    listener: Any, payload: bytes, refusal: int
) -> None:
    port, spool = await listener()
    replies = await asyncio.to_thread(session, port, payload + b"QUIT\r\n")
    assert refusal in codes(replies), replies
    assert b"354" not in replies and b"queued" not in replies
    assert spool.depth() == 0


async def test_bdat_is_not_offered_nor_accepted(listener: Any) -> None:
    port, spool = await listener()
    payload = (
        b"EHLO x.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<u@" + DOMAIN.encode()
        + b">\r\nBDAT 12 LAST\r\nSubject: x\r\n\r\nQUIT\r\n"
    )  # fmt: skip
    replies = await asyncio.to_thread(session, port, payload)
    assert b"CHUNKING" not in replies
    assert any(c >= 500 for c in codes(replies)), replies
    assert b"queued" not in replies and spool.depth() == 0


async def test_command_flood_in_one_packet(listener: Any) -> None:
    """Thousands of commands in one write: answered in order or cut off, no job, no crash."""
    port, spool = await listener()
    flood = b"NOOP\r\nRSET\r\nVRFY root\r\nHELP\r\nXYZZY\r\n" * 2000
    replies = await asyncio.to_thread(session, port, b"EHLO x\r\n" + flood + b"QUIT\r\n")
    assert replies  # it answered (aiosmtpd closes after too many unknown commands)
    assert b"queued" not in replies and spool.depth() == 0
    # And the listener still serves the next client.
    ok = await asyncio.to_thread(session, port, b"EHLO y\r\nQUIT\r\n")
    assert b"221" in ok


async def test_recipient_flood_keeps_the_cap(listener: Any) -> None:
    port, spool = await listener(max_recipients=50)
    rcpts = b"".join(b"RCPT TO:<u%d@" % i + DOMAIN.encode() + b">\r\n" for i in range(1000))
    payload = (b"EHLO x\r\nMAIL FROM:<a@example.com>\r\n" + rcpts
               + b"DATA\r\nSubject: many\r\n\r\nhi\r\n.\r\nQUIT\r\n")  # fmt: skip
    replies = await asyncio.to_thread(session, port, payload)
    got = codes(replies)
    assert got.count(452) == 950, got[:10]
    job = spool.claim()
    assert job is not None and len(job.meta.rcpt_tos) == 50


def slow_client(port: int, payload: bytes, gap: float) -> tuple[int, bytes]:
    """Send one byte every ``gap`` seconds; returns (bytes sent before the server hung up,
    what it said)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        said = s.recv(1024)
        sent = 0
        for byte in payload:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            sent += 1
            time.sleep(gap)
            s.setblocking(False)
            try:
                chunk = s.recv(1024)
                said += chunk
                if not chunk:
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            finally:
                s.setblocking(True)
    return sent, said


@pytest.mark.parametrize(
    "payload",
    [
        b"EHLO slowloris.example.with.a.very.long.name.that.never.ends.example\r\n",
        b"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<u@"
        + DOMAIN.encode()
        + b">\r\nDATA\r\n"
        + b"Subject: slow\r\n\r\n"
        + b"z" * 200,
    ],
)
async def test_slowloris_is_cut_off_by_the_command_timeout(listener: Any, payload: bytes) -> None:
    port, spool = await listener(command_timeout="1s")
    sent, said = await asyncio.to_thread(slow_client, port, payload, 0.05)
    # The idle timer is reset only by complete commands: trickling bytes does not keep a
    # connection slot for ever.
    assert sent < len(payload), (sent, said)
    assert b"queued" not in said
    assert spool.depth() == 0
