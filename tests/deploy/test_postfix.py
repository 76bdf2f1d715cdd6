"""Postfix interoperation with a real Postfix from Debian (deploy/postfix.md).

    sender ──SMTP──▶ Postfix A (Internet side) ──▶ mugai ──▶ Postfix B (LGWAN side) ──▶ Maildir

Postfix A relays town.example.lg.jp to mugai's SMTP port (transport_maps, or content_filter
as the documented alternative); mugai relays to Postfix B, which delivers into a Maildir with
virtual(8). Both instances are private (own directories, free loopback ports).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import pwd
import smtplib
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from tests.deploy.postfix import Postfix, maildir_messages, start_postfix
from tests.plugins.clamd import EICAR
from tests.waiting import eventually_async

DOMAIN = "town.example.lg.jp"
RCPT = f"yamada@{DOMAIN}"
SENDER = "tanaka@example.co.jp"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def postfix_factory() -> Iterator[Callable[[str, str], Postfix]]:
    started: list[Postfix] = []

    def factory(name: str, main_cf: str) -> Postfix:
        instance = start_postfix(name, main_cf)
        started.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in started:
            instance.stop()


def lgwan_relay_cf() -> str:
    """Postfix B: final destination for DOMAIN, virtual(8) into {root}/mail/<user>/ Maildirs."""
    nobody = pwd.getpwnam("nobody")
    return f"""
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {{root}}/mail
virtual_mailbox_maps = inline:{{ {{{RCPT}=yamada/}} }}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
# Rebuilt messages (pages as images) are larger than what came in.
message_size_limit = 104857600
virtual_mailbox_limit = 0
"""


def internet_mta_cf(mugai_port: int, routing: str) -> str:
    """Postfix A: accepts mail for DOMAIN from anywhere and hands it to mugai."""
    hop = f"smtp:[127.0.0.1]:{mugai_port}"
    common = f"relay_domains = {DOMAIN}\nmessage_size_limit = 26214400\n"
    if routing == "transport_maps":
        return common + f"transport_maps = inline:{{ {{{DOMAIN}={hop}}} }}\n"
    return common + f"content_filter = {hop}\n"


def html_mail_with_csv() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"田中 <{SENDER}>"
    msg["To"] = RCPT
    msg["Subject"] = "見積書送付の件"
    msg["Message-ID"] = "<postfix-interop-1@example.co.jp>"
    msg["X-Mailer"] = "must-not-pass"
    # HTML only, so the body must be converted to text and its link disarmed.
    msg.set_content(
        '<html><body><p>山田様</p><a href="http://evil.example/login">ログイン</a>'
        "<script>alert(1)</script></body></html>",
        subtype="html",
    )
    msg.add_attachment(
        "品名,数量\nりんご,3\n".encode("cp932"),
        maintype="text",
        subtype="csv",
        filename="見積.csv",
        params={"charset": "shift_jis"},
    )
    return msg.as_bytes()


def eicar_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RCPT
    msg["Subject"] = "invoice"
    msg.set_content("see attachment\n")
    msg.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="a.com")
    return msg.as_bytes()


def submit(port: int, data: bytes, mail_from: str = SENDER) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mx.example.co.jp")
        refused = client.sendmail(mail_from, [RCPT], data)
        assert refused == {}


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def wait_maildir(maildir: Path, count: int, logs: Callable[[], str]) -> list[bytes]:
    def arrived() -> list[bytes]:
        found = maildir_messages(maildir)
        assert len(found) >= count, f"{len(found)} of {count} arrived\n{logs()}"
        return found

    return await eventually_async(arrived, timeout=120, interval=0.2)


async def start_chain(
    gateway_factory: Any, postfix_factory: Callable[[str, str], Postfix], routing: str
) -> tuple[Postfix, Gateway, Postfix]:
    lgwan = await asyncio.to_thread(postfix_factory, "lgwan", lgwan_relay_cf())
    (lgwan.root / "mail").mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(lgwan.root / "mail", nobody.pw_uid, nobody.pw_gid)
    gw: Gateway = await gateway_factory(
        None, delivery={"relay": lgwan.address, "retry_schedule": ["1s"]}
    )
    _, mugai_port = gw.smtp_address
    edge = await asyncio.to_thread(postfix_factory, "edge", internet_mta_cf(mugai_port, routing))
    return edge, gw, lgwan


@pytest.mark.parametrize("routing", ["transport_maps", "content_filter"])
async def test_mail_through_postfix_mugai_postfix_arrives_sanitized(
    gateway_factory: Any, postfix_factory: Callable[[str, str], Postfix], routing: str
) -> None:
    edge, gw, lgwan = await start_chain(gateway_factory, postfix_factory, routing)
    maildir = lgwan.root / "mail" / "yamada"

    def logs() -> str:
        return f"--- edge ---\n{edge.log[-3000:]}\n--- lgwan ---\n{lgwan.log[-3000:]}"

    await asyncio.to_thread(submit, edge.port, html_mail_with_csv())
    [raw] = await wait_maildir(maildir, 1, logs)
    msg = parse(raw)

    # Envelope kept across both hops: virtual(8) writes the envelope into these headers.
    assert msg["Return-Path"] == f"<{SENDER}>"
    assert msg["Delivered-To"] == RCPT
    assert msg["Message-ID"] == "<postfix-interop-1@example.co.jp>"
    assert msg["Subject"] == "見積書送付の件"
    mugai_id = msg["X-Mugai-Id"]
    assert mugai_id
    assert "CHG_TEXT" in msg["X-Mugai-Sanitized"] and "REP_LINK" in msg["X-Mugai-Sanitized"]
    assert msg["X-Mailer"] is None
    received = msg.get_all("Received") or []
    assert any("(mugai)" in r and mugai_id in r for r in received), received
    assert any("lgwan.test" in r for r in received), received

    assert not any(p.get_content_type() == "text/html" for p in msg.walk())
    body = msg.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "【無害化のお知らせ】" in text and "[Sanitization notice]" in text
    assert f"X-Mugai-Id: {mugai_id}" in text
    assert "hxxp://evil[.]example/login" in text and "http://evil.example" not in text
    assert "alert(1)" not in text
    [csv] = [p for p in msg.iter_attachments()]
    assert csv.get_content_type() == "text/csv"
    assert csv.get_filename() == "見積.csv"
    assert csv.get_content_charset() == "utf-8"
    assert "りんご,3" in csv.get_content()

    row = await asyncio.to_thread(gw.store.get, mugai_id)
    assert row is not None and row.status == "delivered"
    assert row.mail_from == SENDER and list(row.rcpt_tos) == [RCPT]


async def test_virus_is_withheld_and_only_a_notice_reaches_the_lgwan_maildir(
    gateway_factory: Any, postfix_factory: Callable[[str, str], Postfix]
) -> None:
    edge, gw, lgwan = await start_chain(gateway_factory, postfix_factory, "transport_maps")
    maildir = lgwan.root / "mail" / "yamada"

    def logs() -> str:
        return f"--- edge ---\n{edge.log[-3000:]}\n--- lgwan ---\n{lgwan.log[-3000:]}"

    await asyncio.to_thread(submit, edge.port, eicar_mail())
    [raw] = await wait_maildir(maildir, 1, logs)
    assert b"EICAR" not in raw and b"a.com" not in raw
    msg = parse(raw)
    # The notice goes out with the null sender, so it can never bounce back to the Internet.
    assert msg["Return-Path"] == "<>"
    assert msg["X-Mugai-Sanitized"] == "WITHHELD"
    body = msg.get_body(("plain",))
    assert body is not None and "virus_found" in body.get_content()
    row = await asyncio.to_thread(gw.store.get, msg["X-Mugai-Id"])
    assert row is not None and row.status == "quarantined"
