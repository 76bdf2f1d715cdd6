"""A withheld mail (virus, unparseable) keeps its identity: real SMTP in, real clamd, real relay."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest

from tests.e2e.test_mail_flow import RCPT, body_text, parse, queue_id, wait_status
from tests.jp import encoded_words
from tests.plugins.clamd import EICAR
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink

pytestmark = pytest.mark.timeout(180)
SUBJECT = "【至急】固定資産税の納付について"
SENDER = "東京都 主税局"


def japanese_virus_mail() -> bytes:
    head = (
        f"From: {encoded_words(SENDER)} <shuzei@metro.example.jp>\r\n"
        f"To: {RCPT}\r\n"
        f"Subject: {encoded_words(SUBJECT, split=9)}\r\n"
        "Date: Wed, 02 Dec 2026 10:15:00 +0900\r\n"
        "Message-ID: <tax-2026-12@metro.example.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    ).encode()
    body = (
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "秘密の本文".encode()
        + b"\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="a.com"\r\n\r\n' + EICAR + b"\r\n--b--\r\n"
    )
    return head + body


async def test_virus_mail_is_identified_and_the_notice_names_it(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink)
    job_id = queue_id(await asend(gw, japanese_virus_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined"})
    assert row.reasons == ["virus_found"]
    assert row.subject == SUBJECT and row.header_from == f"{SENDER} <shuzei@metro.example.jp>"
    for query in ("<tax-2026-12@metro.example.jp>", "tax-2026-12@metro.example.jp"):
        [found] = await asyncio.to_thread(gw.store.find, message_id=query)
        assert found.id == job_id
    [got] = await smtp_sink.wait_for(1)
    text = body_text(parse(got.data))
    assert f"件名: {SUBJECT}" in text and f"差出人: {SENDER}" in text
    assert "日付: Wed, 02 Dec 2026 10:15:00 +0900" in text and f"X-Mugai-Id: {job_id}" in text
    assert "秘密の本文" not in text and EICAR not in got.data


async def test_unparseable_mail_is_identified(gateway_factory: Any, smtp_sink: Sink) -> None:
    gw = await gateway_factory(smtp_sink, sanitize={"max_parts": 2})
    m = EmailMessage()
    m["From"] = "many@example.com"
    m["To"] = RCPT
    m["Subject"] = "parts\u202egnp.exe"  # bidi in the subject: shown without it
    m["Message-ID"] = "<parts@example.com>"
    m.set_content("x")
    for n in range(3):
        m.add_attachment(b"data", maintype="application", subtype="octet-stream",
                         filename=f"{n}.bin")  # fmt: skip
    job_id = queue_id(await asend(gw, m.as_bytes(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined"})
    assert row.reasons == ["too_many_parts"]
    assert row.message_id == "<parts@example.com>" and row.header_from == "many@example.com"
    assert row.subject == "partsgnp.exe"
    [got] = await smtp_sink.wait_for(1)
    text = body_text(parse(got.data))
    assert "件名: partsgnp.exe" in text and "\u202e" not in text


async def test_withheld_notice_has_no_live_link_and_passes_the_egress_gate(
    gateway_factory: Any, smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice quotes the sender's Subject and From in a body a client links: disarmed,
    and checked by the egress gate like every delivery (a refusal sends no notice)."""
    from gateway.egress.check import check_message

    gw = await gateway_factory(smtp_sink)
    evil = japanese_virus_mail().replace(
        encoded_words(SUBJECT, split=9).encode(), b"Reset at https://evil.example.com/login"
    )
    job_id = queue_id(await asend(gw, evil, rcpt=RCPT))
    await wait_status(gw, job_id, {"quarantined"})
    [got] = await smtp_sink.wait_for(1)
    check_message(got.data)
    assert "hxxps://evil[.]example[.]com/login" in body_text(parse(got.data))

    import gateway.worker

    monkeypatch.setattr(
        gateway.worker, "render_withheld_notice", lambda *a, **k: "https://evil.example.com/\n"
    )
    job_id = queue_id(await asend(gw, japanese_virus_mail(), rcpt=RCPT))
    await wait_status(gw, job_id, {"quarantined"})
    await asyncio.sleep(1.0)
    assert len(smtp_sink.messages) == 1  # the refused notice was not sent
