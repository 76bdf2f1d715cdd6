"""No open relay: every trick to make the gateway accept a recipient outside its domains fails
with 5xx, and nothing reaches the spool. (The basic cases are in tests/ingress/test_smtp.py.)"""

from __future__ import annotations

import asyncio
import smtplib
import socket
from typing import Any

import pytest

from tests.security.conftest import DOMAIN


def rcpt_reply(port: int, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.command_encoding = "utf-8"  # IDN and look-alike domains go out as UTF-8
        c.ehlo("client.example.com")
        c.mail("a@example.com", ["SMTPUTF8"] if not rcpt.isascii() else [])
        return c.rcpt(rcpt)


@pytest.mark.parametrize(
    "rcpt",
    [
        "user@OTHER.EXAMPLE",
        f"user@{DOMAIN}@evil.example",
        f"user@evil.example@{DOMAIN}",  # last @ wins in some MTAs
        f"user%evil.example%{DOMAIN}@{DOMAIN}",
        f"evil.example!user@{DOMAIN}",
        f'"user@evil.example"@{DOMAIN}',
        f'"user%evil.example"@{DOMAIN}',
        "user@[127.0.0.1]",
        f"user@{DOMAIN}.",  # trailing dot: our domain, or malformed; checked below
        f"user@{DOMAIN}..evil.example",
        f"user@evil.example.{DOMAIN}x",
        "user@xn--r8jz45g.jp",  # IDN (punycode) outside our domains
        "user@町役場.jp",  # IDN (UTF-8, SMTPUTF8)
        "user@town.exаmple.lg.jp",  # Cyrillic а: a look-alike of ours
        f"user@{DOMAIN}\x00.evil.example",
        f"user@{DOMAIN} evil.example",
        f"<user@evil.example>@{DOMAIN}",
        "postmaster",  # no domain at all: never a local delivery on a gateway
    ],
)
async def test_relay_tricks_are_refused(listener: Any, rcpt: str) -> None:
    port, spool = await listener()
    try:
        code, reply = await asyncio.to_thread(rcpt_reply, port, rcpt)
    except smtplib.SMTPServerDisconnected:
        code, reply = 0, b"disconnected"
    if rcpt == f"user@{DOMAIN}.":
        assert code in (250, 553)  # the root label: ours, or refused as malformed; never relayed
        return
    assert 500 <= code < 600 or code == 0, (rcpt, code, reply)
    assert spool.depth() == 0


def raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.recv(1024)
        s.sendall(payload)
        got = b""
        while b"221" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.parametrize(
    "rcpt_line",
    [
        b"RCPT TO:<@" + DOMAIN.encode() + b":user@evil.example>",  # source route
        b"RCPT TO:<@a.example,@" + DOMAIN.encode() + b":user@evil.example>",
        b"RCPT TO: user@evil.example",  # no angle brackets
        b"RCPT TO:<user@evil.example> NOTIFY=NEVER",
        b"RCPT TO:<user@" + DOMAIN.encode() + b">\rRCPT TO:<x@evil.example>",  # bare CR
    ],
)
async def test_raw_relay_attempts_spool_nothing(listener: Any, rcpt_line: bytes) -> None:
    port, spool = await listener()
    payload = (
        b"EHLO x.example\r\nMAIL FROM:<a@example.com>\r\n" + rcpt_line
        + b"\r\nDATA\r\nSubject: relay\r\n\r\nrelay me\r\n.\r\nQUIT\r\n"
    )  # fmt: skip
    replies = await asyncio.to_thread(raw_exchange, port, payload)
    assert b"250 2.0.0 queued" not in replies, replies
    assert spool.depth() == 0
