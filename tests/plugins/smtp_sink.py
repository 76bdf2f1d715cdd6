"""pytest plugin: a real SMTP server (aiosmtpd) on a loopback port 0, standing in for the
LGWAN-side relay. It records what it receives and can be told to answer 4xx/5xx."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Sink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    # Reply to DATA instead of 250 (e.g. "451 4.3.0 try later", "554 5.7.1 no").
    data_reply: str | None = None
    # Per-recipient RCPT replies (e.g. {"b@x": "450 4.2.1 busy"}).
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.base_events.Server | None = None
    sessions: int = 0  # EHLO/HELO greetings seen: one per connection from our relay client
    connections: list[SMTP] = field(default_factory=list)  # to close one from the server side
    # Close the connection after storing the message, before the reply to DATA's final dot.
    drop_after_data: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        async def _wait() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.messages

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        self.sessions += 1
        self.connections.append(server)
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.messages.append(
            Received(
                str(envelope.mail_from), list(envelope.rcpt_tos), envelope.original_content or b""
            )
        )
        self.arrived.set()
        if self.drop_after_data and server.transport is not None:
            server.transport.close()
        return "250 OK"


async def start_sink(tls_context: ssl.SSLContext | None = None) -> Sink:
    """An aiosmtpd sink on port 0; with ``tls_context`` it offers STARTTLS."""
    sink = Sink()

    class Big(SMTP):
        line_length_limit = 1 << 20

    loop = asyncio.get_running_loop()
    sink.server = await loop.create_server(
        lambda: Big(
            sink,
            decode_data=False,
            data_size_limit=None,
            enable_SMTPUTF8=True,
            tls_context=tls_context,
        ),
        "127.0.0.1",
        0,
    )
    sink.port = int(sink.server.sockets[0].getsockname()[1])
    return sink


@pytest.fixture
async def smtp_sink() -> AsyncIterator[Sink]:
    sink = await start_sink()
    yield sink
    assert sink.server is not None
    sink.server.close()
