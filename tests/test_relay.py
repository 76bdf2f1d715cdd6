"""Delivery to the LGWAN relay: TLS when required (never plaintext), reply classification."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gateway.errors import RelayRejected, RelayTemporary
from gateway.relay import SmtpRelay, _Client
from tests.ingress.test_tls import self_signed
from tests.plugins.smtp_sink import Sink, start_sink

MSG = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"


async def test_require_tls_delivers_over_verified_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    sink = await start_sink(tls_context=ctx)
    try:
        relay = SmtpRelay(sink.address, hostname="mugai.test", require_tls=True, ca_file=cert)
        relay.tls_context.check_hostname = False  # type: ignore[union-attr]  # cert is for a name
        result = await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    finally:
        assert sink.server is not None
        sink.server.close()
    assert result.accepted == ("u@town.example.lg.jp",)
    assert sink.messages[0].data == MSG


async def test_require_tls_never_falls_back_to_plaintext(smtp_sink: Sink) -> None:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test", require_tls=True)
    with pytest.raises(RelayTemporary):
        await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert smtp_sink.messages == []


async def test_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    sink = await start_sink(tls_context=ctx)
    try:
        relay = SmtpRelay(sink.address, hostname="mugai.test", require_tls=True)  # system CAs
        with pytest.raises(RelayTemporary):
            await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    finally:
        assert sink.server is not None
        sink.server.close()
    assert sink.messages == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 later", RelayTemporary), ("554 5.7.1 no", RelayRejected)],
)
async def test_data_replies_are_classified(
    smtp_sink: Sink, reply: str, error: type[Exception]
) -> None:
    smtp_sink.data_reply = reply
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test")
    with pytest.raises(error):
        await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)


async def test_closed_port_is_temporary(tmp_path: Path) -> None:
    relay = SmtpRelay("127.0.0.1:1", hostname="mugai.test", timeout=5)
    with pytest.raises(RelayTemporary):
        await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert await relay.ping() is False


async def test_connections_are_reused_and_stale_ones_replaced(smtp_sink: Sink) -> None:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test")
    for _ in range(5):
        await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert len(smtp_sink.messages) == 5
    assert smtp_sink.sessions == 1
    # The relay drops idle sessions: the next send notices (not connected) and reconnects.
    for client, _ in relay._idle:
        client.close()
    await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert len(smtp_sink.messages) == 6 and smtp_sink.sessions == 2
    await relay.close()


async def test_server_closing_an_idle_session_costs_no_noop_and_no_copy(smtp_sink: Sink) -> None:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test")
    await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    # The relay's idle timeout: the server closes the session we keep in the pool.
    transport = smtp_sink.connections[-1].transport
    assert transport is not None
    transport.close()
    await asyncio.sleep(0.1)
    result = await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert result.accepted == ("u@town.example.lg.jp",)
    assert len(smtp_sink.messages) == 2 and smtp_sink.sessions == 2  # exactly one copy
    await relay.close()


class _StillConnected(_Client):
    @property
    def is_connected(self) -> bool:
        return True


async def test_pooled_session_dead_at_mail_from_is_retried_once_fresh(smtp_sink: Sink) -> None:
    """The close is not seen before MAIL FROM is written (the race a NOOP used to cover)."""
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test")
    await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    client, _ = relay._idle[0]
    transport = smtp_sink.connections[-1].transport
    assert transport is not None
    transport.close()
    await asyncio.sleep(0.1)
    # This pooled client still believes it is connected, like a FIN still in flight.
    client.__class__ = _StillConnected
    await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert len(smtp_sink.messages) == 2 and smtp_sink.sessions == 2
    await relay.close()


async def test_disconnect_after_data_dot_is_never_resent(smtp_sink: Sink) -> None:
    relay = SmtpRelay(smtp_sink.address, hostname="mugai.test")
    await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)  # a reused session next
    smtp_sink.drop_after_data = True
    with pytest.raises(RelayTemporary):
        await relay.send("a@example.com", ("u@town.example.lg.jp",), MSG)
    assert len(smtp_sink.messages) == 2 and smtp_sink.sessions == 1  # no second connection
    await relay.close()
