"""Bounded header parsing (gateway.mime.parse): hostile Content-* fields never reach the stdlib."""

from __future__ import annotations

import time
import urllib.parse
from email.message import EmailMessage

import pytest

from gateway.errors import MalformedHeader
from gateway.mime.parse import MAX_MIME_FIELD_BYTES, MAX_MIME_SPECIALS, parse_message
from gateway.settings import load_settings

LIMITS = load_settings().sanitize


def parse(raw: bytes) -> object:
    return parse_message(
        raw,
        max_parts=LIMITS.max_parts,
        max_depth=LIMITS.max_depth,
        max_header_bytes=LIMITS.max_header_bytes,
    )


def mail(content_type: bytes, body: bytes = b"body") -> bytes:
    return (
        b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        + content_type
        + b"\r\n\r\n"
        + body
        + b"\r\n"
    )


@pytest.mark.parametrize(
    "field",
    [
        b"Content-Type: text/plain" + b";" * 40_960,  # 30 s in the stdlib before the bound
        b"Content-Type: text/plain; a=" + b'"' * 16_000,  # 11 s
        b"Content-Type: text/plain; a=b" + b"<>@,:[]" * 2_000,
        b"Content-Type: text/plain; a=b " + b"(" * 1_000,
        b"Content-Disposition: attachment" + b"; a=b" * 200,
        b"Content-Type: text/plain; name=" + b"x" * (MAX_MIME_FIELD_BYTES + 1),
        b"Content-Type: text/plain;\r\n " + b"a=b;\r\n " * 500 + b"c=d",  # folded
        b"cOnTeNt-TyPe: text/plain" + b";" * 5_000,
    ],
)
def test_hostile_mime_fields_are_refused_as_malformed_header(field: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(MalformedHeader) as err:
        parse(mail(field))
    assert err.value.reason == "malformed_header"
    print(f"refused {len(field)} bytes in {time.monotonic() - started:.4f} s")


def test_the_bound_applies_to_part_headers_too() -> None:
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nok\r\n"
        b"--b\r\nContent-Type: application/octet-stream" + b";" * 40_960 + b"\r\n\r\nx\r\n--b--\r\n"
    )
    with pytest.raises(MalformedHeader):
        parse(raw)


def test_many_fields_share_one_budget() -> None:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m.set_content("x")
    for i in range(40):
        m.add_attachment(b"x", maintype="application", subtype="octet-stream",
                         filename=f"{i}" + "x" * 4000)  # fmt: skip
    with pytest.raises(MalformedHeader):
        parse(m.as_bytes())


def test_real_long_japanese_file_names_still_parse() -> None:
    name = "令和8年度_予算要求資料_総務部_情報政策課_" * 6 + "最終版.xlsx"
    m = EmailMessage()
    m["From"] = "a@example.com"
    m.set_content("本文")
    m.add_attachment(b"PK\x03\x04", maintype="application", subtype="octet-stream",
                     filename=name)  # fmt: skip
    raw = m.as_bytes()
    assert urllib.parse.quote(name.encode())[:20].encode() in raw or b"=?utf-8?" in raw
    parsed = parse(raw)
    assert [a.filename for a in parsed.attachments] == [name]  # type: ignore[attr-defined]


def test_worst_case_within_the_bounds_is_measured() -> None:
    """Many fields each just inside the bounds: measured (printed), never asserted on time."""
    field_value = b"a=b" + (b"<" + b"x" * 80) * (MAX_MIME_SPECIALS - 4)
    parts = b"".join(
        b"--b\r\nContent-Type: text/plain; " + field_value + b"\r\n\r\nx\r\n" for _ in range(20)
    )
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    )
    started = time.monotonic()
    parsed = parse(raw)
    print(f"20 fields at the bounds parsed in {time.monotonic() - started:.3f} s")
    assert parsed.part_count == 21  # type: ignore[attr-defined]
