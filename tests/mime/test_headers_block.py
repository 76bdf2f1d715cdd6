"""The header block of a withheld message: decoded like the sanitizer does, bounded, total."""

from __future__ import annotations

import base64

from gateway.mime.headers_block import header_block, one_line, summarize
from tests.jp import encoded_words

CAP = 262_144


def test_japanese_headers_decode_like_the_sanitizer() -> None:
    raw = (
        b"From: " + encoded_words("国税庁 徴収課").encode() + b" <tax@nta.example.go.jp>\r\n"
        b"To: yamada@town.example.lg.jp\r\n"
        b"Subject: " + encoded_words("【重要】納付書の送付について①", split=7).encode() + b"\r\n"
        b"Date: Tue, 1 Dec 2026 09:00:00 +0900\r\n"
        b"Message-ID: <tax-123@nta.example.go.jp>\r\n"
        b"Content-Type: text/plain\r\n\r\nX5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR body\r\n"
    )
    found = summarize(raw, CAP)
    assert found.subject == "【重要】納付書の送付について①"
    assert found.header_from == "国税庁 徴収課 <tax@nta.example.go.jp>"
    assert found.message_id == "<tax-123@nta.example.go.jp>"
    assert found.date == "Tue, 1 Dec 2026 09:00:00 +0900"
    assert found.to == "yamada@town.example.lg.jp"


def test_raw_shift_jis_subject_is_detected() -> None:
    raw = b"Subject: " + "見積書の件".encode("cp932") + b"\r\n\r\nbody"
    assert summarize(raw, CAP).subject == "見積書の件"


def test_injected_line_breaks_and_bidi_are_removed() -> None:
    evil = "請求書\u202egpj.exe\r\nBcc: all@town.example.lg.jp\u2028x"
    word = "=?UTF-8?B?" + base64.b64encode(evil.encode()).decode() + "?="
    found = summarize(f"Subject: {word}\r\n\r\n".encode(), CAP)
    assert "\u202e" not in found.subject and "\n" not in found.subject and "\r" not in found.subject
    assert "\u2028" not in found.subject
    assert found.subject.startswith("請求書gpj.exe")
    assert one_line("a\x00b\x1bc\u200fd") == "abcd"


def test_first_header_wins_and_the_body_is_never_read() -> None:
    raw = (
        b"Subject: first\r\nSubject: second\r\n\r\n"
        b"Subject: from-the-body\r\nMessage-ID: <body@example>\r\n"
    )
    found = summarize(raw, CAP)
    assert found.subject == "first" and found.message_id == ""


def test_the_block_is_bounded() -> None:
    huge = b"X-Pad: " + b"a" * 1_000_000 + b"\r\n"
    raw = b"Subject: ok\r\n" + huge + b"Message-ID: <late@example>\r\n\r\nbody"
    assert len(header_block(raw, 4096)) <= 4096
    found = summarize(raw, 4096)
    assert found.subject == "ok" and found.message_id == ""  # beyond the cap: not read
    many = b"".join(b"X-%d: v\r\n" % i for i in range(100_000)) + b"Subject: deep\r\n\r\n"
    assert summarize(many, len(many)).subject == ""  # past the first 1000 fields: ignored


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"\r\n\r\n", b":::\r\n", b"Subject: =?x?Q?=ZZ?=\r\n",
                b"Subject: " + b"\xe3" * 5000, b"no colon at all\nSubject: x\n\n"):  # fmt: skip
        summarize(raw, CAP)


def test_bare_lf_and_no_blank_line() -> None:
    assert summarize(b"Subject: lf only\nFrom: a@example.com\n\nbody", CAP).subject == "lf only"
    assert summarize(b"Subject: no end\r\nFrom: a@example.com", 20).subject == "no end"
