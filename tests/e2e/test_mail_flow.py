"""Whole path with real servers: SMTP in (port 0) → spool → real clamd → sanitize → real relay."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.scan.clamd import ClamdScanner
from tests.jp import cp50220, encoded_words
from tests.plugins.clamd import EICAR
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink
from tests.waiting import eventually_async

RCPT = "yamada@town.example.lg.jp"
pytestmark = pytest.mark.timeout(180)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text


async def wait_status(gw: Gateway, job_id: str, wanted: set[str], timeout: float = 60) -> Any:
    async def reached() -> Any:
        row = await asyncio.to_thread(gw.store.get, job_id)
        if row is None or row.status not in wanted:
            gw.wakeup.set()
            raise AssertionError(f"status of {job_id}: {row.status if row else None}")
        return row

    return await eventually_async(reached, timeout=timeout, what=f"status in {wanted}")


def queue_id(reply: str) -> str:
    assert reply.startswith("2.0.0 queued as "), reply
    return reply.rsplit(" ", 1)[1]


def japanese_mail() -> bytes:
    subject = encoded_words("【重要】①見積書の件（株式会社髙﨑）", split=7)
    body = cp50220("山田様\r\n\r\n①㈱Ⅱの件、髙﨑よりご連絡します。\r\nよろしくお願いします。\r\n")
    return (
        b"From: " + encoded_words("髙橋 太郎").encode() + b" <takahashi@example.co.jp>\r\n"
        b"To: " + RCPT.encode() + b"\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Date: Mon, 2 Nov 2026 10:00:00 +0900\r\n"
        b"Message-ID: <ja-1@example.co.jp>\r\n"
        b"In-Reply-To: <prev@town.example.lg.jp>\r\n"
        b"X-Mailer: Something that must not pass\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\n" + body
    )


async def test_japanese_cp50220_mail_arrives_as_clean_utf8(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink)
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    [got] = await smtp_sink.wait_for(1)
    assert got.mail_from == "sender@example.com" and got.rcpt_tos == [RCPT]
    raw = got.data
    assert b"=?ISO-2022-JP?" not in raw and b"X-Mailer" not in raw
    msg = parse(raw)
    assert msg["Subject"] == "【重要】①見積書の件（株式会社髙﨑）"
    assert msg["From"].addresses[0].display_name == "髙橋 太郎"
    assert msg["Message-ID"] == "<ja-1@example.co.jp>"
    assert msg["In-Reply-To"] == "<prev@town.example.lg.jp>"
    assert msg["X-Mugai-Id"] == job_id
    assert msg["Received"].startswith("from client.example.com")
    assert "by mugai.example.lg.jp (mugai)" in msg["Received"]
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    text = body_text(msg)
    assert "①㈱Ⅱの件、髙﨑よりご連絡します。" in text
    assert "\ufffd" not in text
    assert "【無害化のお知らせ】" in text and "[Sanitization notice]" in text
    assert f"X-Mugai-Id: {job_id}" in text
    assert text.index("【無害化のお知らせ】") < text.index("山田様")
    row = await wait_status(gw, job_id, {"delivered"})
    assert row.subject == "【重要】①見積書の件（株式会社髙﨑）"
    assert row.message_id == "<ja-1@example.co.jp>"
    assert await asyncio.to_thread(gw.store.blob, job_id, "original") == japanese_mail()


PHISH_HTML = """<html><head><title>t</title><style>.x{color:red}</style>
<script>alert(1)</script></head><body>
<p>アカウントが停止されました。<a href="http://evil.example/login?u=1">こちらからログイン</a></p>
<img src="https://tracker.example/p.gif" alt="logo">
<iframe src="https://evil.example/frame"></iframe>
<form action="https://evil.example/post"><input name=pw></form>
</body></html>"""


async def test_html_phishing_becomes_text_with_disarmed_links(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink)
    m = EmailMessage()
    m["From"] = "bank@example.com"
    m["To"] = RCPT
    m["Subject"] = "重要なお知らせ"
    m["Message-ID"] = "<phish@example.com>"
    m.set_content("アカウントが停止されました。 http://evil.example/login?u=1")
    m.add_alternative(PHISH_HTML, subtype="html")
    await asend(gw, m.as_bytes(), rcpt=RCPT)
    [got] = await smtp_sink.wait_for(1)
    msg = parse(got.data)
    assert msg.get_content_type() == "text/plain"
    assert all(p.get_content_type() != "text/html" for p in msg.walk())
    text = body_text(msg)
    assert "http://evil" not in text and "https://" not in text
    assert "evil[.]example" in text
    tokens = set(msg["X-Mugai-Sanitized"].split())
    assert {"CHG_TEXT", "REP_LINK"} <= tokens


async def test_html_only_mail_is_converted(gateway_factory: Any, smtp_sink: Sink) -> None:
    gw = await gateway_factory(smtp_sink)
    m = EmailMessage()
    m["From"] = "news@example.com"
    m["To"] = RCPT
    m["Subject"] = "html only"
    m.set_content(PHISH_HTML, subtype="html")
    await asend(gw, m.as_bytes(), rcpt=RCPT)
    [got] = await smtp_sink.wait_for(1)
    text = body_text(parse(got.data))
    assert "こちらからログイン" in text and "hxxp://evil[.]example/login" in text
    assert "alert(1)" not in text and "<" + "script" not in text


def eicar_mail() -> bytes:
    m = EmailMessage()
    m["From"] = "x@example.com"
    m["To"] = RCPT
    m["Subject"] = "invoice"
    m["Date"] = "Tue, 01 Dec 2026 09:00:00 +0900"
    m["Message-ID"] = "<virus@example.com>"
    m.set_content("see attachment")
    m.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="inv.com")
    return m.as_bytes()


async def test_eicar_never_arrives_and_is_quarantined(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink)
    job_id = queue_id(await asend(gw, eicar_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined"})
    assert row.reasons == ["virus_found"]
    assert "EICAR" in row.scan["signature"]
    # Only the short notice reaches the recipient: none of the message's content.
    [got] = await smtp_sink.wait_for(1)
    assert got.rcpt_tos == [RCPT]
    assert EICAR not in got.data and base64.b64encode(EICAR)[:40] not in got.data
    notice = parse(got.data)
    assert notice["X-Mugai-Sanitized"] == "WITHHELD"
    text = body_text(notice)
    assert "see attachment" not in text and job_id in text  # no content; the id to quote
    # Which mail it was: sender, subject and date (headers only).
    assert "差出人: x@example.com" in text and "件名: invoice" in text
    assert "日付: Tue, 01 Dec 2026 09:00:00 +0900" in text
    # The record is findable by its Message-ID, with subject and sender.
    [found] = await asyncio.to_thread(gw.store.find, message_id="virus@example.com")
    assert found.id == job_id and found.subject == "invoice"
    assert found.header_from == "x@example.com"


async def test_relay_tempfail_is_retried_then_delivered(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    smtp_sink.data_reply = "451 4.3.0 try later"
    gw = await gateway_factory(smtp_sink)
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"deferred"})
    assert row.reasons == ["relay_temporary"]
    assert row.message_id == "<ja-1@example.co.jp>"  # findable while it waits
    assert smtp_sink.messages == []
    smtp_sink.data_reply = None
    row = await wait_status(gw, job_id, {"delivered"}, timeout=30)
    assert row.attempts >= 2
    assert len(smtp_sink.messages) == 1


async def test_relay_permanent_failure_quarantines(gateway_factory: Any, smtp_sink: Sink) -> None:
    smtp_sink.data_reply = "554 5.7.1 not here"
    gw = await gateway_factory(smtp_sink, notice={"withheld_notice": False})
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined"})
    assert row.reasons == ["relay_rejected"]
    assert "554" in row.detail


async def test_queue_lifetime_expiry_quarantines_with_relay_timeout(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    smtp_sink.data_reply = "421 4.3.0 down"
    gw = await gateway_factory(
        smtp_sink,
        delivery={"max_queue_lifetime": "2s", "retry_schedule": ["1s"]},
        notice={"withheld_notice": False},
    )
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined"}, timeout=30)
    assert row.reasons == ["relay_timeout"]
    assert smtp_sink.messages == []
    assert gw.spool.depth() == 0


async def test_clamd_down_means_retry_never_delivery(
    gateway_factory: Any, smtp_sink: Sink, tmp_path: Any, clamd_address: str
) -> None:
    gw = await gateway_factory(smtp_sink, clamav={"address": f"unix:{tmp_path}/no-such-clamd.sock"})
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"deferred"})
    assert row.reasons == ["clamd_unavailable"]
    await asyncio.sleep(1.5)
    assert smtp_sink.messages == []
    # clamd comes back: the retry delivers.
    gw.pipeline.scanner = ClamdScanner(clamd_address)
    await wait_status(gw, job_id, {"delivered"}, timeout=30)
    assert len(smtp_sink.messages) == 1


async def test_partial_recipient_tempfail_retries_only_those(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    other = "suzuki@town.example.lg.jp"
    smtp_sink.rcpt_replies = {other: "450 4.2.1 mailbox busy"}
    gw = await gateway_factory(smtp_sink)
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=[RCPT, other]))
    await smtp_sink.wait_for(1)
    assert smtp_sink.messages[0].rcpt_tos == [RCPT]
    smtp_sink.rcpt_replies = {}
    await wait_status(gw, job_id, {"delivered"}, timeout=30)
    await smtp_sink.wait_for(2)
    assert smtp_sink.messages[1].rcpt_tos == [other]


async def test_outbox_maildir_without_relay(gateway_factory: Any) -> None:
    gw = await gateway_factory(None)
    job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
    await wait_status(gw, job_id, {"delivered"})
    files = list((gw.settings.outbox_dir / "new").iterdir())
    assert len(files) == 1
    msg = parse(files[0].read_bytes())
    assert msg["X-Mugai-Id"] == job_id
    assert "髙﨑" in body_text(msg)


async def test_attachments_text_reencoded_and_executable_removed(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    gw = await gateway_factory(smtp_sink)
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["To"] = RCPT
    m["Subject"] = "files"
    m.set_content("添付します")
    m.add_attachment(
        "①納品書 髙﨑\r\n金額,１０００\r\n".encode("cp932"),
        maintype="application",
        subtype="octet-stream",
        filename="納品書.txt",
    )
    m.add_attachment(
        b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200,
        maintype="application",
        subtype="octet-stream",
        filename="invoice\u202efdp.exe",
    )
    await asend(gw, m.as_bytes(), rcpt=RCPT)
    [got] = await smtp_sink.wait_for(1)
    msg = parse(got.data)
    atts = list(msg.iter_attachments())
    assert [a.get_filename() for a in atts] == ["納品書.txt"]
    assert atts[0].get_content_type() == "text/plain"
    assert atts[0].get_content().replace("\r\n", "\n") == "①納品書 髙﨑\n金額,１０００\n"
    assert b"filename*=utf-8''" in got.data  # RFC 2231
    text = body_text(msg)
    assert "納品書.txt" in text and "invoicefdp.exe" in text and "\u202e" not in text
    assert set(msg["X-Mugai-Sanitized"].split()) >= {"CONV_ATTACH", "DEL_ATTACH"}


async def test_metrics_count_outcomes_and_stage_latencies(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    import httpx

    from gateway.api.main import create_app

    gw = await gateway_factory(smtp_sink)
    app = create_app(gw)

    async def metric(client: httpx.AsyncClient, name: str) -> float:
        # Prometheus text format: "<name>{<labels>} <value>", one sample per line.
        for line in (await client.get("/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        before = await metric(client, 'mugai_jobs_total{outcome="delivered"}')
        job_id = queue_id(await asend(gw, japanese_mail(), rcpt=RCPT))
        await wait_status(gw, job_id, {"delivered"})
        after = await metric(client, 'mugai_jobs_total{outcome="delivered"}')
        assert after == before + 1
        assert await metric(client, 'mugai_stage_seconds_count{stage="scan"}') >= 1
        assert await metric(client, 'mugai_stage_seconds_count{stage="relay"}') >= 1
        assert await metric(client, 'mugai_smtp_data_replies_total{code="250"}') >= 1
