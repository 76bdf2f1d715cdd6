"""8. Mail-gateway conventions end to end: our Received line, loop detection, no backscatter."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink
from tests.reliability.scenarios import SENDER, backscatter, mail, mail_loop, until

pytestmark = pytest.mark.timeout(300)


async def test_loop_is_quarantined_and_notices_go_to_recipients_only(
    tmp_path: Path, clamd_address: str
) -> None:
    row = await mail_loop(tmp_path, clamd_address, count=3)
    print(row.as_dict())
    assert row.accepted == 6 and row.quarantined == 3 and row.delivered == 3, row
    assert row.reasons == [("mail_loop",)], row
    # Of the 6 messages the relay got, the 3 notices are ours; the 3 relayed mails are not.
    assert row.with_our_received == 3, row
    assert row.backscatter == 0, row


async def test_received_line_and_no_bounce_for_a_relay_rejection(
    gateway_factory: object, smtp_sink: Sink
) -> None:
    """A 5xx from the relay quarantines: nothing goes back to the (often forged) sender."""
    gw = await gateway_factory(smtp_sink)  # type: ignore[operator]
    reply = await asend(gw, mail("ok", 1), rcpt="sato@town.example.lg.jp", mail_from=SENDER)
    await smtp_sink.wait_for(1)
    got = email.message_from_bytes(smtp_sink.messages[0].data)
    received = got.get_all("Received")
    assert received and len(received) == 1
    assert "by mugai.example.lg.jp (mugai)" in received[0]
    assert reply.rsplit(" ", 1)[1] in received[0]  # the id ties the hop to the admin API
    smtp_sink.data_reply = "554 5.7.1 no"
    await asend(gw, mail("rej", 2), rcpt="sato@town.example.lg.jp", mail_from=SENDER)
    assert await until(lambda: gw.store.counts_by_status().get("quarantined", 0) == 1, 60, gw)
    smtp_sink.data_reply = None
    assert backscatter(smtp_sink) == 0
    assert all(m.mail_from != SENDER or m.rcpt_tos != [SENDER] for m in smtp_sink.messages)


async def test_refused_recipients_produce_no_mail_at_all(
    gateway_factory: object, smtp_sink: Sink
) -> None:
    import asyncio
    import smtplib

    gw = await gateway_factory(smtp_sink)  # type: ignore[operator]
    _, port = gw.smtp_address

    def probe() -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("x.example")
            c.mail(SENDER)
            return c.rcpt("victim@other.example")[0]

    assert await asyncio.to_thread(probe) == 550
    assert await until(lambda: gw.spool.depth() == 0, 2) and gw.store.counts_by_status() == {}
    assert smtp_sink.messages == []
