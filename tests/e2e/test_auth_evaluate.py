"""``[auth] evaluate = true`` over real SMTP: the peer address and HELO the intake records
reach our own SPF/DMARC (DNS stub on loopback), and the verdict reaches the delivered mail,
the subject tag and the record."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from tests.auth.dns_server import DnsStub
from tests.e2e.test_mail_flow import body_text, parse, queue_id, wait_status
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink

RCPT = "yamada@town.example.lg.jp"
TAG = "【なりすましの疑い】"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    stub = DnsStub()
    # The test client connects from 127.0.0.1 and says EHLO client.example.com.
    stub.txt["example.com"] = b"v=spf1 ip4:127.0.0.1 -all"
    stub.txt["_dmarc.example.com"] = b"v=DMARC1; p=reject"
    stub.txt["_dmarc.example.lg.jp"] = b"v=DMARC1; p=quarantine"
    stub.txt["client.example.com"] = b"v=spf1 ip4:127.0.0.1 -all"
    yield stub
    stub.close()


def mail(from_: str, subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = from_
    m["To"] = RCPT
    m["Subject"] = subject
    m["Message-ID"] = f"<{abs(hash(subject))}@example.com>"
    # A sender's own "pass" for our hostname: dropped, never believed.
    m["Authentication-Results"] = "mugai.test; spf=pass; dmarc=pass"
    m.set_content("本文です。\n")
    return m.as_bytes()


async def test_spf_and_dmarc_from_the_smtp_session(
    gateway_factory: Any, smtp_sink: Sink, dns: DnsStub
) -> None:
    gw = await gateway_factory(
        smtp_sink,
        smtp={"hostname": "mugai.test"},
        auth={"evaluate": True, "nameservers": [dns.address], "dns_timeout": "1s",
              "subject_tag": TAG},
    )  # fmt: skip
    good = queue_id(await asend(gw, mail("sender@example.com", "正規"), rcpt=RCPT))
    row = await wait_status(gw, good, {"delivered", "quarantined"})
    assert row.status == "delivered"
    [got] = await smtp_sink.wait_for(1)
    msg = parse(got.data)
    [ar] = msg.get_all("Authentication-Results")
    assert "spf=pass smtp.mailfrom=example.com" in str(ar)
    assert "dmarc=pass (p=reject) header.from=example.com" in str(ar)
    assert msg["Subject"] == "正規"
    assert row.scan["auth"]["evaluated"] is True and row.scan["auth"]["overall"] == "pass"

    forged = queue_id(await asend(gw, mail("総務課 <soumu@town.example.lg.jp>", "偽物"), rcpt=RCPT))
    row = await wait_status(gw, forged, {"delivered", "quarantined"})
    [_, got] = await smtp_sink.wait_for(2)
    msg = parse(got.data)
    [ar] = msg.get_all("Authentication-Results")
    assert "dmarc=fail (p=quarantine) header.from=town.example.lg.jp" in str(ar)
    assert msg["Subject"] == TAG + "偽物"
    text = body_text(msg)
    assert "なりすましの疑いがあります" in text and "DMARC: fail (p=quarantine)" in text
    assert row.scan["auth"]["dmarc"] == "fail"
    assert "_dmarc.town.example.lg.jp" in dns.queries and "example.com" in dns.queries
