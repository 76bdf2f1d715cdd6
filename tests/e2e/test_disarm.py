"""Nothing live crosses: over real SMTP, real clamd and a sink relay (issue 10).

One test per family: links revived by controls, forwarded headers, names, text attachments,
CSV formulas, handler schemes; and the egress gate (clamd on the rebuilt message, the
independent checker) quarantining what a compromised converter produced.
"""

from __future__ import annotations

import csv
import io
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.egress.links import hidden_characters, live_links
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize.base import Context, Sanitizer
from gateway.sanitize.registry import REGISTRY
from tests.e2e.test_mail_flow import body_text, parse, queue_id, wait_status
from tests.plugins.clamd import EICAR
from tests.plugins.gateway import asend
from tests.plugins.smtp_sink import Sink

RCPT = "yamada@town.example.lg.jp"
pytestmark = pytest.mark.timeout(180)


def base(subject: str = "件名") -> EmailMessage:
    m = EmailMessage()
    m["From"] = "sender@example.com"
    m["To"] = RCPT
    m["Subject"] = subject
    m["Message-ID"] = "<disarm@example.com>"
    return m


def all_text(msg: EmailMessage) -> list[tuple[str, str]]:
    """(where, text) for every text the recipient sees: parts, their names, and headers."""
    out: list[tuple[str, str]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = part.get_filename()
        if name:
            out.append(("name", name))
        if part.get_content_maintype() == "text":
            content = part.get_content()
            assert isinstance(content, str)
            out.append((part.get_content_type(), content))
    return out


def assert_nothing_live(msg: EmailMessage) -> None:
    for where, text in all_text(msg):
        assert not live_links(text), (where, live_links(text))
        assert not hidden_characters(text), (where, hidden_characters(text))


async def deliver(gw: Any, sink: Sink, data: bytes) -> tuple[EmailMessage, Any]:
    job_id = queue_id(await asend(gw, data, rcpt=RCPT))
    row = await wait_status(gw, job_id, {"delivered", "quarantined"})
    assert row.status == "delivered", row.reasons
    [got] = await sink.wait_for(1)
    return parse(got.data), row


async def test_controls_inside_urls_and_handler_schemes_in_the_body(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    m = base()
    m.set_content(
        "ログイン: https:\x01//evil.example.com/login\n"
        "www\x02.evil.example.com\n"
        "共有: \\\\evil.example.com\\share\\x.docx と file:\\\\evil.example.com\\s\n"
        "診断: ms-msdt:/id PCWDiagnostic と search-ms:query=x と ms-word:ofe|u|https://e.com/a\n"
        "短縮: evil-corp.me/login ｈｔｔｐｓ：／／ｅｖｉｌ．ｃｏｍ\n"
        "連絡先: taro@city.example.lg.jp\n"
    )
    gw = await gateway_factory(smtp_sink)
    msg, row = await deliver(gw, smtp_sink, m.as_bytes())
    assert_nothing_live(msg)
    text = body_text(msg)
    assert "hxxps://evil[.]example[.]com/login" in text
    assert "[\\\\]evil[.]example[.]com\\share" in text and "ms-msdt[:]/id" in text
    assert "taro@city.example.lg.jp" in text  # addresses stay usable
    assert "REP_LINK" in msg["X-Mugai-Sanitized"]
    assert row.timings["egress"] >= 0


async def test_forwarded_message_headers_and_display_names(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    inner = EmailMessage()
    inner["From"] = '"https://evil.example.com/login" <a@example.com>'
    inner["To"] = RCPT
    inner["Subject"] = "Reset at https://evil.example.com/reset?u=1 or www.evil-corp.me"
    inner.set_content("inner body https://inner.example.com/x\n")
    m = base("Fwd: see https://subject.example.com/")
    m.set_content("転送します")
    m.add_attachment(inner)
    gw = await gateway_factory(smtp_sink)
    msg, _ = await deliver(gw, smtp_sink, m.as_bytes())
    assert_nothing_live(msg)
    text = body_text(msg)
    assert "> Subject: Reset at hxxps://evil[.]example[.]com/reset?u=1 or www[.]evil-corp[.]me" in (
        text
    )
    assert "> From: https://" not in text
    # The Subject may keep its text (no client links a Subject), never raw controls.
    assert msg["Subject"] == "Fwd: see https://subject.example.com/"


async def test_names_in_the_notice_and_on_the_parts(gateway_factory: Any, smtp_sink: Sink) -> None:
    m = base()
    m.set_content("添付")
    m.add_attachment(
        "本文 http://x.example.com/".encode(), maintype="text", subtype="plain",
        filename="www.evil-corp.me\u202etxt.txt",
    )  # fmt: skip
    m.add_attachment(
        b"MZ\x90\x00" + b"\x00" * 64, maintype="application", subtype="octet-stream",
        filename="login at evil.example.com now.exe",
    )  # fmt: skip
    gw = await gateway_factory(smtp_sink)
    msg, _ = await deliver(gw, smtp_sink, m.as_bytes())
    assert_nothing_live(msg)
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert names == ["www[.]evil-corp[.]metxt.txt"]
    text = body_text(msg)
    assert "www[.]evil-corp[.]me" in text and "evil[.]example[.]com" in text
    assert set(msg["X-Mugai-Sanitized"].split()) >= {"CONV_ATTACH", "DEL_ATTACH"}


async def test_text_csv_ics_attachments(gateway_factory: Any, smtp_sink: Sink) -> None:
    rows = [
        ["氏名", "金額", "式"],
        ["髙﨑①㈱", "-5", "=cmd|' /C calc'!A0"],
        ["+81", "@SUM(A1:A2)", '+HYPERLINK("https://evil.com/x","x")'],
        ["-2+3+cmd|' /C calc'!A0", "\t=1", "https://evil.example.com/"],
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    m = base()
    m.set_content("添付")
    m.add_attachment(buf.getvalue().encode("utf-8"), maintype="text", subtype="csv",
                     filename="一覧.csv")  # fmt: skip
    m.add_attachment(
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\nURL:https://evil.exa\r\n mple.com/j\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n",
        maintype="text", subtype="calendar", filename="invite.ics",
    )  # fmt: skip
    m.add_attachment(b"memo \\\\evil.com\\s https://evil.com/\n", maintype="text",
                     subtype="plain", filename="memo.txt")  # fmt: skip
    gw = await gateway_factory(smtp_sink)
    msg, _ = await deliver(gw, smtp_sink, m.as_bytes())
    assert_nothing_live(msg)
    parts = {p.get_filename(): p for p in msg.iter_attachments()}
    assert set(parts) == {"一覧.csv", "invite.txt", "memo.txt"}
    raw_csv = parts["一覧.csv"].get_payload(decode=True)
    assert isinstance(raw_csv, bytes) and raw_csv.startswith(b"\xef\xbb\xbf")
    got = list(csv.reader(io.StringIO(raw_csv.decode("utf-8-sig"), newline="")))
    assert got[1][:2] == ["髙﨑①㈱", "-5"] and got[2][0] == "+81"
    assert got[1][2] == "'=cmd|' /C calc'!A0" and got[3][0].startswith("'-2+3")
    assert got[2][1].startswith("'@") and got[3][1] == "'\t=1"
    ics = parts["invite.txt"].get_content()
    assert "hxxps://evil[.]example[.]com/j" in ics


async def test_html_alternative_dropped_is_reported_as_dropped(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    m = base()
    m.set_content("テキスト版の本文")
    m.add_alternative("<p>HTML版 <a href='https://evil.example.com/'>x</a></p>", subtype="html")
    gw = await gateway_factory(smtp_sink)
    msg, _ = await deliver(gw, smtp_sink, m.as_bytes())
    text = body_text(msg)
    assert "HTML形式の本文はテキストに変換しました" not in text
    assert "HTML形式の別版は削除し" in text and "テキスト版の本文" in text
    assert "HTML版" not in text


def _zip_with_exe() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ok.txt", "ok")
        z.writestr("run.exe", b"MZ\x90\x00" + b"\x00" * 64)
    return buf.getvalue()


async def test_removal_inside_an_archive_sets_del_attach(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    m = base()
    m.set_content("zip")
    m.add_attachment(_zip_with_exe(), maintype="application", subtype="zip", filename="a.zip")
    gw = await gateway_factory(smtp_sink)
    msg, row = await deliver(gw, smtp_sink, m.as_bytes())
    assert set(msg["X-Mugai-Sanitized"].split()) >= {"CONV_ATTACH", "DEL_ATTACH"}
    [zip_report] = [p for p in row.parts if p["filename"] == "a.zip"]
    assert any(c["action"] == Action.REMOVED.value for c in zip_report["children"])


# -- the egress gate: a compromised converter ------------------------------------------------


def _evil_text(payload: bytes) -> dict[str, Sanitizer]:
    """The default registry with a compromised text converter, for the gateway's constructor."""

    def sanitizer(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        return SanitizeResult(
            files=(CleanFile("out.txt", "text/plain", payload),), action=Action.KEPT
        )

    return {**REGISTRY, "text": sanitizer}


async def test_converter_output_with_a_virus_is_quarantined_as_virus_found_output(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    m = base()
    m.set_content("本文")
    m.add_attachment(b"harmless text\n", maintype="text", subtype="plain", filename="a.txt")
    registry = _evil_text(b"prefix " + EICAR)
    gw = await gateway_factory(smtp_sink, registry=registry, notice={"withheld_notice": False})
    job_id = queue_id(await asend(gw, m.as_bytes(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined", "delivered"})
    assert row.status == "quarantined" and row.reasons == ["virus_found_output"]
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"see https://evil.example.com/login", "egress_live_link"),
        (b"hidden \xe2\x80\xae text", "egress_hidden_text"),
        (b"\\\\evil.example.com\\share", "egress_live_link"),
    ],
)
async def test_converter_output_with_live_content_is_refused_by_the_checker(
    gateway_factory: Any,
    smtp_sink: Sink,
    payload: bytes,
    reason: str,
) -> None:
    m = base()
    m.set_content("本文")
    m.add_attachment(b"harmless text\n", maintype="text", subtype="plain", filename="a.txt")
    registry = _evil_text(payload)
    gw = await gateway_factory(smtp_sink, registry=registry, notice={"withheld_notice": False})
    job_id = queue_id(await asend(gw, m.as_bytes(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined", "delivered"})
    assert row.status == "quarantined" and row.reasons == [reason]
    assert smtp_sink.messages == []


async def test_html_entities_that_spell_eicar_never_arrive(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    """The entity-built body: whichever scan catches it, nothing of it reaches the relay."""
    m = base()
    m.set_content("".join(f"&#{b};" for b in EICAR), subtype="html")
    gw = await gateway_factory(smtp_sink, notice={"withheld_notice": False})
    job_id = queue_id(await asend(gw, m.as_bytes(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined", "delivered"})
    assert row.status == "quarantined"
    assert row.reasons[0] in ("virus_found", "virus_found_output")
    print("entity-built EICAR caught as", row.reasons[0])
    assert smtp_sink.messages == []


async def test_utf16_text_spelling_eicar_never_arrives(
    gateway_factory: Any, smtp_sink: Sink
) -> None:
    m = base()
    m.set_content("本文")
    m.add_attachment(b"\xff\xfe" + EICAR.decode().encode("utf-16-le"), maintype="text",
                     subtype="plain", filename="readme.txt")  # fmt: skip
    gw = await gateway_factory(smtp_sink, notice={"withheld_notice": False})
    job_id = queue_id(await asend(gw, m.as_bytes(), rcpt=RCPT))
    row = await wait_status(gw, job_id, {"quarantined", "delivered"})
    assert row.status == "quarantined"
    assert row.reasons[0] in ("virus_found", "virus_found_output")
    print("UTF-16 EICAR caught as", row.reasons[0])
    assert smtp_sink.messages == []
