"""Outlook .msg: parsed in the sandbox, delivered as text plus sanitized attachments.

Samples are generated (tests/sanitize/outlook_msg.py); the shared corpus has no Outlook
files, but its mime4j ``*.msg`` files are RFC 5322 text named .msg, and must stay mail.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from gateway.mime.detect import detect
from gateway.model import Action
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.registry import sanitize_part
from gateway.settings import load_settings
from tests.sanitize.outlook_msg import Attachment, Message

EXE = b"MZ\x90\x00" + b"\x00" * 200


def ctx(**limits: object) -> Context:
    cfg = load_settings(sanitize=limits).sanitize
    return Context(limits=cfg, pages=PageBudget(cfg.max_pages_per_message))


def sample() -> Message:
    return Message(
        subject="【至急】請求書の件",
        sender_name="経理課 山田",
        sender_email="yamada@example.jp",
        to="総務課 <soumu@town.example.lg.jp>",
        cc="課長",
        body="請求書を添付します。 https://evil.example/login",
        attachments=[
            Attachment("メモ.txt", "メモ①です".encode()),
            Attachment("invoice.exe", EXE),
            Attachment(
                "転送",
                embedded=Message(
                    subject="転送された件",
                    sender_email="inner@example.com",
                    body="inner https://inner.example/x",
                    attachments=[Attachment("inner.txt", b"inner attachment")],
                ),
            ),
        ],
    )


def test_detected_by_content_not_by_name() -> None:
    data = sample().build()
    assert detect(data, "会議.msg", "application/vnd.ms-outlook").kind == "msg"
    assert detect(data, "", "application/octet-stream").kind == "msg"
    # An Outlook message named like a document is a mismatch, never a document.
    assert "type_mismatch" in detect(data, "report.doc", "application/msword").flags


def test_msg_becomes_text_and_attachments_are_sanitized() -> None:
    report, files = sanitize_part(
        sample().build(), "請求書.msg", "application/vnd.ms-outlook", ctx(), "2"
    )
    assert report.detected_type == "msg" and report.action is Action.CONVERTED
    assert "msg_converted" in report.reasons and "links_disarmed" in report.reasons
    names = [f.filename for f in files]
    assert names[0] == "請求書.txt"
    text = files[0].data.decode("utf-8")
    assert "Subject: 【至急】請求書の件" in text
    assert "経理課 山田" in text and "yamada@example.jp" in text
    assert "To: 総務課" in text
    assert "hxxps://evil[.]example/login" in text and "https://" not in text
    # The embedded message is quoted in the text, its own attachment sanitized too.
    assert "転送された件" in text and "hxxps://inner[.]example/x" in text
    assert "メモ.txt" in names and "inner.txt" in names
    assert files[names.index("メモ.txt")].data.decode("utf-8") == "メモ①です"
    flat = {c.filename: c for c in _walk(report)}
    assert flat["invoice.exe"].action is Action.REMOVED
    assert all(f.content_type in ("text/plain", "application/pdf", "image/png") for f in files)
    assert not any(f.data.startswith(b"MZ") for f in files)


def _walk(report):  # type: ignore[no-untyped-def]
    for child in report.children:
        yield child
        yield from _walk(child)


def test_html_body_is_converted_and_disarmed() -> None:
    msg = Message(
        subject="html",
        html='<p>ログイン <a href="https://evil.example/a">こちら</a></p><script>x()</script>'.encode(),
    )
    report, files = sanitize_part(msg.build(), "h.msg", "", ctx(), "1")
    text = files[0].data.decode("utf-8")
    assert "html_to_text" in report.reasons
    assert "<script" not in text and "<a" not in text and "hxxps://evil[.]example/a" in text


def test_header_injection_in_subject_is_flattened() -> None:
    msg = Message(subject="a\r\nBcc: victim@example.com\r\n\r\n<html>", body="b")
    report, files = sanitize_part(msg.build(), "i.msg", "", ctx(), "1")
    text = files[0].data.decode("utf-8")
    assert report.action is Action.CONVERTED
    head = text.split("\n\n", 1)[0]
    assert "Bcc" not in [line.split(":", 1)[0] for line in head.splitlines()]


def test_too_many_attachments_is_refused() -> None:
    msg = Message(subject="many", attachments=[Attachment(f"{i}.txt", b"x") for i in range(6)])
    report, files = sanitize_part(msg.build(), "m.msg", "", ctx(max_archive_members=5), "1")
    assert report.action is Action.REMOVED and report.reasons == ("archive_limit",)
    assert files == ()


def test_unpacked_size_is_bounded() -> None:
    msg = Message(subject="big", attachments=[Attachment("big.txt", b"a" * 300_000)])
    report, _ = sanitize_part(msg.build(), "b.msg", "", ctx(max_unpacked_bytes=100_000), "1")
    assert report.action is Action.REMOVED and report.reasons == ("archive_limit",)


def test_embedded_messages_nest_only_so_deep() -> None:
    inner = Message(subject="level 5", body="deep")
    for level in range(4, 0, -1):
        inner = Message(subject=f"level {level}", attachments=[Attachment("fwd", embedded=inner)])
    report, files = sanitize_part(inner.build(), "d.msg", "", ctx(max_archive_depth=3), "1")
    assert report.action is Action.REMOVED and report.reasons == ("archive_limit",)
    assert files == ()


def test_garbage_and_truncated_msg_fail_closed() -> None:
    data = sample().build()
    for broken in (data[:1536], data[:512] + b"\xff" * (len(data) - 512)):
        report, files = sanitize_part(broken, "x.msg", "application/vnd.ms-outlook", ctx(), "1")
        assert report.action is Action.REMOVED, report
        assert files == ()


def test_corrupt_property_stream_does_not_pass_anything() -> None:
    msg = sample()
    data = bytearray(msg.build())
    # Point every fixed property at nonsense: counts and times garbage, still no crash/pass.
    for off in range(0, len(data) - 8):
        if data[off : off + 4] == struct.pack("<I", (0x3705 << 16) | 3):
            data[off + 8 : off + 12] = struct.pack("<i", 5)  # claim "embedded" for every file
    report, files = sanitize_part(bytes(data), "c.msg", "", ctx(), "1")
    assert not any(f.data.startswith(b"MZ") for f in files)


def test_msg_inside_a_zip() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("請求書.msg", sample().build())
    report, files = sanitize_part(buf.getvalue(), "m.zip", "application/zip", ctx(), "1")
    assert any(f.filename == "請求書.txt" for f in files)


@pytest.mark.corpus
def test_corpus_mime_files_named_msg_stay_mail(corpus: Path) -> None:
    paths = sorted((corpus / "mail").rglob("*.msg"))
    assert paths, "corpus has mime4j .msg files"
    for path in paths:
        kind = detect(path.read_bytes(), path.name, "").kind
        assert kind != "msg", path
