"""Bounded header parsing (gateway.mime.parse): hostile Content-* fields never reach the stdlib."""

from __future__ import annotations

import email
import email.policy
import time
import urllib.parse
from email.message import EmailMessage

import pytest

from gateway.errors import MalformedHeader, TooDeep, TooManyParts, Unparseable
from gateway.mime.parse import (
    ADDRESS_HEADERS,
    KEPT_HEADERS,
    MAX_MIME_FIELD_BYTES,
    MAX_MIME_FIELDS_TOTAL,
    MAX_MIME_SPECIALS,
    ParsedMessage,
    address_headers,
    check_mime_fields,
    decoded_headers,
    parse_message,
)
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


# --- the public functions one by one ----------------------------------------------------------


def parsed(raw: bytes) -> ParsedMessage:
    return parse_message(
        raw,
        max_parts=LIMITS.max_parts,
        max_depth=LIMITS.max_depth,
        max_header_bytes=LIMITS.max_header_bytes,
    )


def test_check_mime_fields_passes_ordinary_fields_and_bounds_the_total() -> None:
    check_mime_fields(mail(b'Content-Type: text/plain; charset="iso-2022-jp"'))  # no raise
    one = b"Content-Type: text/plain; name=" + b"x" * 6_000 + b"\r\n"
    check_mime_fields(one)  # one field just under its own bound
    with pytest.raises(MalformedHeader, match="more than 131072 bytes"):
        check_mime_fields(one * (MAX_MIME_FIELDS_TOTAL // len(one) + 1))


def test_decoded_headers_keeps_only_listed_headers_decoded_first_one_wins() -> None:
    msg = email.message_from_bytes(
        b"Subject: =?ISO-2022-JP?B?GyRCOCtAURsoQg==?=\r\nSubject: second\r\n"
        b"X-Mailer: evil\r\nDKIM-Signature: v=1\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n",
        policy=email.policy.default,
    )
    assert decoded_headers(msg) == {"subject": "見積", "message-id": "<a@b>"}
    assert set(KEPT_HEADERS) >= {"from", "subject", "date", "message-id", "references"}


def test_address_headers_split_before_decoding() -> None:
    msg = email.message_from_bytes(
        b'From: "Sato, Taro" <sato@example.jp>\r\n'
        b"To: =?UTF-8?B?55Sw5Lit?= <tanaka@example.jp>, b@example.jp\r\n"
        b"Bcc: hidden@example.jp\r\n\r\nhi\r\n",
        policy=email.policy.default,
    )
    got = address_headers(msg)
    assert got["from"] == [("Sato, Taro", "sato@example.jp")]  # the "," stays in the name
    assert got["to"] == [("田中", "tanaka@example.jp"), ("", "b@example.jp")]
    assert "bcc" not in got and set(got) <= set(ADDRESS_HEADERS)


def test_parse_message_sorts_bodies_attachments_and_dropped_parts() -> None:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["Subject"] = "見積"
    m.set_content("plain text")
    m.add_alternative("<p>html</p>", subtype="html")
    m.make_mixed()
    m.add_attachment(b"%PDF-1.7\n", maintype="application", subtype="pdf", filename="見積.pdf")
    m.add_attachment(b"sig", maintype="application", subtype="pkcs7-signature")
    m["Received"] = "from x by y; date"
    p = parsed(m.as_bytes())
    assert [(b.kind, b.text.strip()) for b in p.bodies] == [("plain", "plain text")]
    assert [(a.index, a.filename, a.declared_type, a.data) for a in p.attachments] == [
        ("1.2", "見積.pdf", "application/pdf", b"%PDF-1.7\n")
    ]
    assert [(d.index, d.declared_type, d.reason) for d in p.dropped] == [
        ("1.1.2", "text/html", "alternative_not_used"),
        ("1.3", "application/pkcs7-signature", "signature_removed"),
    ]
    assert p.headers["subject"] == "見積" and p.part_count == 5
    assert p.received_by == ["from x by y; date"]


def test_a_forwarded_message_is_quoted_and_its_parts_numbered_inside_it() -> None:
    inner = EmailMessage()
    inner["From"] = "b@example.com"
    inner["Subject"] = "元のメール"
    inner.set_content("original text")
    outer = EmailMessage()
    outer["From"] = "a@example.com"
    outer.set_content("see below")
    outer.add_attachment(inner)
    p = parsed(outer.as_bytes())
    assert [(b.kind, b.quote_level) for b in p.bodies] == [
        ("plain", 0),
        ("headers", 1),
        ("plain", 1),
    ]
    assert "Subject: 元のメール" in p.bodies[1].text and "From: b@example.com" in p.bodies[1].text


def test_parse_message_enforces_its_limits() -> None:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m.set_content("x")
    for i in range(3):
        m.add_attachment(b"x", maintype="application", subtype="pdf", filename=f"{i}.pdf")
    raw = m.as_bytes()
    with pytest.raises(TooManyParts):
        parse_message(raw, max_parts=3, max_depth=10, max_header_bytes=10_000)
    with pytest.raises(TooDeep):
        parse_message(raw, max_parts=10, max_depth=0, max_header_bytes=10_000)
    with pytest.raises(Unparseable):
        parse_message(raw, max_parts=10, max_depth=10, max_header_bytes=10)
    assert parse_message(raw, max_parts=5, max_depth=1, max_header_bytes=10_000).part_count == 5
