"""The texts the gateway writes outside the pipeline (PPAP unlock intro, withheld notice)
carry the sender's Subject, From and file names into a body a client links: disarmed too,
and the unlocked message passes the same egress check as every delivery."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

from gateway.egress.check import check_message
from gateway.egress.links import live_links
from gateway.mime.notice import render_withheld_notice
from gateway.model import Action, CleanFile, PartReport
from gateway.settings import load_settings
from gateway.unlock import build_unlocked_message

EVIL_SUBJECT = "Reset at https://evil.example.com/login or evil-corp.me/x \\\\evil.example.com\\s"


def _original() -> bytes:
    m = EmailMessage()
    m["From"] = "https://evil.example.com/x <partner@example.com>"
    m["To"] = "staff@town.example.lg.jp"
    m["Subject"] = EVIL_SUBJECT
    m["Message-ID"] = "<ppap-evil@example.com>"
    m.set_content("see attachment\n")
    return m.as_bytes()


def test_unlocked_message_intro_is_disarmed_and_passes_the_egress_check() -> None:
    row: Any = SimpleNamespace(id="M1", message_id="<ppap-evil@example.com>", subject="")
    report = PartReport(
        index="2", filename="https://evil.example.com/a.zip", declared_type="application/zip",
        detected_type="application/zip", action=Action.CONVERTED, reasons=(),
    )  # fmt: skip
    data = build_unlocked_message(
        original=_original(), msg=row, part="2", filename="https://evil.example.com/a.zip",
        report=report, files=[CleanFile(filename="a.txt", content_type="text/plain", data=b"ok\n")],
        settings=load_settings(None), who="operator", message_id="<new@example.jp>",
    )  # fmt: skip
    check_message(data)  # raises EgressLiveLink while the intro is not disarmed


def test_withheld_notice_disarms_sender_and_subject() -> None:
    text = render_withheld_notice(
        "M1", "virus_found", "情報政策課",
        sender="https://evil.example.com/x <a@example.com>", subject=EVIL_SUBJECT,
        date="Mon, 1 Dec 2026 10:00:00 +0900 www.evil.example.com",
    )  # fmt: skip
    assert live_links(text) == []
    assert "evil" in text  # still readable


def test_unlocked_message_tokens_follow_the_one_rule() -> None:
    """A link disarmed inside the unlocked archive is REP_LINK, as in every delivery."""
    row: Any = SimpleNamespace(id="M1", message_id="<ppap-evil@example.com>", subject="")
    member = PartReport(
        index="2.1", filename="memo.txt", declared_type="text/plain", detected_type="text/plain",
        action=Action.KEPT, reasons=("links_disarmed",),
    )  # fmt: skip
    report = PartReport(
        index="2", filename="a.zip", declared_type="application/zip",
        detected_type="application/zip", action=Action.CONVERTED, reasons=(), children=(member,),
    )  # fmt: skip
    data = build_unlocked_message(
        original=_original(), msg=row, part="2", filename="a.zip", report=report,
        files=[CleanFile(filename="memo.txt", content_type="text/plain", data=b"hxxps://x\n")],
        settings=load_settings(None), who="operator", message_id="<new@example.jp>",
    )  # fmt: skip
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["X-Mugai-Sanitized"].split() == ["CONV_ATTACH", "REP_LINK"]
