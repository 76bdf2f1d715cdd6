"""Sender authentication: real DKIM signatures (key served by a loopback DNS stub), forged
display names, the trusted/untrusted Authentication-Results split, DNS failures bounded."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.dkim_check import Result
from gateway.auth.dns_stub import make_lookup
from gateway.auth.verdict import (
    Overall,
    authentication_results,
    evaluate,
    notice_lines,
    tag_subject,
)
from gateway.settings import AuthSettings, load_settings
from tests.auth.dns_server import DnsStub

TRUSTED = "mx.pref.example.lg.jp"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture
def stub(key: tuple[bytes, bytes]) -> Iterator[DnsStub]:
    server = DnsStub()
    server.txt["sel._domainkey.example.jp"] = key[1]
    yield server
    server.close()


def cfg(stub: DnsStub, **kw: object) -> AuthSettings:
    return load_settings(auth={"nameservers": [stub.address], "dns_timeout": "1s", **kw}).auth


def mail(
    from_: str = "Yamada <yamada@example.jp>", extra: str = "", body: str = "本文\r\n"
) -> bytes:
    return (
        f"{extra}From: {from_}\r\nTo: soumu@town.example.lg.jp\r\nSubject: 請求書\r\n"
        "Message-ID: <1@example.jp>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def sign(raw: bytes, pem: bytes, domain: bytes = b"example.jp") -> bytes:
    sig = dkim.sign(raw, b"sel", domain, pem, include_headers=[b"from", b"to", b"subject"])
    return sig + raw


def test_real_dkim_pass(stub: DnsStub, key: tuple[bytes, bytes]) -> None:
    raw = sign(mail(), key[0])
    lookup = make_lookup([stub.address], 1.0)
    v = evaluate(raw, "yamada@example.jp", cfg(stub), lookup)
    assert [s.result for s in v.dkim] == [Result.PASS]
    assert v.dkim[0].domain == "example.jp" and v.dkim[0].selector == "sel"
    assert v.overall is Overall.PASS and v.reasons == ()
    assert "sel._domainkey.example.jp" in stub.queries
    header = authentication_results("mugai.town.example.lg.jp", v)
    assert header.startswith("mugai.town.example.lg.jp; dkim=pass header.d=example.jp")


def test_body_changed_after_signing_fails(stub: DnsStub, key: tuple[bytes, bytes]) -> None:
    raw = sign(mail(), key[0]).replace("本文".encode(), "振込先変更".encode())
    v = evaluate(raw, "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert [s.result for s in v.dkim] == [Result.FAIL]
    assert v.overall is Overall.SUSPICIOUS and "dkim_fail" in v.reasons


def test_signature_of_another_domain_is_not_alignment(
    stub: DnsStub, key: tuple[bytes, bytes]
) -> None:
    stub.txt["sel._domainkey.evil.example"] = key[1]
    raw = sign(mail("経理 <keiri@example.jp>"), key[0], b"evil.example")
    v = evaluate(raw, "bounce@evil.example", cfg(stub), make_lookup([stub.address], 1.0))
    assert [s.result for s in v.dkim] == [Result.PASS]  # valid, but for evil.example
    assert v.overall is Overall.SUSPICIOUS and "envelope_mismatch" in v.reasons


def test_dns_timeout_is_unknown_and_bounded(stub: DnsStub, key: tuple[bytes, bytes]) -> None:
    stub.silent.add("sel._domainkey.example.jp")
    raw = sign(mail(), key[0])
    v = evaluate(raw, "yamada@example.jp", cfg(stub), make_lookup([stub.address], 0.5))
    assert [s.result for s in v.dkim] == [Result.TEMPERROR]
    assert v.overall is Overall.UNKNOWN


def test_servfail_and_missing_key(stub: DnsStub, key: tuple[bytes, bytes]) -> None:
    stub.servfail.add("sel._domainkey.example.jp")
    raw = sign(mail(), key[0])
    v = evaluate(raw, "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert v.dkim[0].result is Result.TEMPERROR and v.overall is Overall.UNKNOWN
    stub.servfail.clear()
    del stub.txt["sel._domainkey.example.jp"]
    v = evaluate(raw, "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert v.dkim[0].result is not Result.PASS and v.overall is not Overall.PASS


def test_no_signature_no_trusted_header_is_none(stub: DnsStub) -> None:
    v = evaluate(mail(), "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert v.overall is Overall.NONE and v.dkim == ()
    assert stub.queries == []  # nothing to look up


@pytest.mark.parametrize(
    "name",
    [
        '"soumu@town.example.lg.jp" <x@evil.example>',
        "総務課 ｓｏｕｍｕ＠ｔｏｗｎ．ｅｘａｍｐｌｅ．ｌｇ．ｊｐ <x@evil.example>",
        '"soumu [at] town.example.lg.jp" <x@evil.example>',
        '"町長 mayor@town.example.lg.jp" <x@evil.example>',
    ],
)
def test_display_name_showing_another_address(stub: DnsStub, name: str) -> None:
    v = evaluate(mail(name), "x@evil.example", cfg(stub), make_lookup([stub.address], 1.0))
    assert v.overall is Overall.SUSPICIOUS
    assert "display_name_lookalike" in v.reasons
    assert "town.example.lg.jp" in v.lookalike
    lines = notice_lines(v)
    assert lines[0].startswith("送信元の認証: なりすましの疑い")
    assert any("town[.]example[.]lg[.]jp" in line for line in lines)
    assert any(line.startswith("Sender authentication: possible spoofing") for line in lines)


def test_display_name_of_own_domain_is_fine(stub: DnsStub) -> None:
    v = evaluate(
        mail('"yamada@example.jp" <yamada@example.jp>'),
        "yamada@mail.example.jp",
        cfg(stub),
        make_lookup([stub.address], 1.0),
    )
    assert v.reasons == () and not v.envelope_mismatch


def test_trusted_header_above_received_is_used(stub: DnsStub) -> None:
    extra = (
        f"Authentication-Results: {TRUSTED}; spf=pass smtp.mailfrom=example.jp;\r\n"
        "  dkim=none; dmarc=fail (p=reject) header.from=example.jp\r\n"
        "Received: from mx.example.jp by mx.pref.example.lg.jp; Tue, 1 Dec 2026 10:00:00 +0900\r\n"
    )
    v = evaluate(
        mail(extra=extra), "yamada@example.jp",
        cfg(stub, trusted_authserv_ids=[TRUSTED]), make_lookup([stub.address], 1.0),
    )  # fmt: skip
    assert v.dmarc == "fail" and v.spf == "pass" and v.upstream == TRUSTED
    assert v.overall is Overall.SUSPICIOUS and "dmarc_fail" in v.reasons
    assert f"dmarc=fail (from {TRUSTED})" in authentication_results("gw", v)


def test_forged_trusted_header_below_received_is_ignored(stub: DnsStub) -> None:
    # The sender wrote "dmarc=pass" with our upstream's id; it lies below the upstream's
    # Received line, so the upstream did not write it.
    extra = (
        "Received: from evil.example by mx.pref.example.lg.jp; Tue, 1 Dec 2026 10:00:00 +0900\r\n"
        f"Authentication-Results: {TRUSTED}; spf=pass; dmarc=pass header.from=example.jp\r\n"
    )
    v = evaluate(
        mail('"経理" <keiri@example.jp>', extra=extra), "x@evil.example",
        cfg(stub, trusted_authserv_ids=[TRUSTED]), make_lookup([stub.address], 1.0),
    )  # fmt: skip
    assert v.dmarc == "" and v.upstream == ""
    assert v.overall is Overall.SUSPICIOUS and "envelope_mismatch" in v.reasons


def test_untrusted_authserv_id_is_ignored(stub: DnsStub) -> None:
    extra = "Authentication-Results: mx.evil.example; dmarc=pass; spf=pass\r\n"
    for trusted in ([], [TRUSTED]):
        v = evaluate(
            mail(extra=extra), "yamada@example.jp",
            cfg(stub, trusted_authserv_ids=trusted), make_lookup([stub.address], 1.0),
        )  # fmt: skip
        assert v.dmarc == "" and v.overall is Overall.NONE


def test_multiple_from_addresses_are_suspicious(stub: DnsStub) -> None:
    raw = mail("a@example.jp, b@evil.example")
    v = evaluate(raw, "a@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert "from_unclear" in v.reasons and v.overall is Overall.SUSPICIOUS


def test_subject_tag_and_header_tokens(stub: DnsStub) -> None:
    v = evaluate(
        mail('"soumu@town.example.lg.jp" <x@evil.example>'), "x@evil.example",
        cfg(stub), make_lookup([stub.address], 1.0),
    )  # fmt: skip
    tag = "【なりすましの疑い】"
    assert tag_subject("請求書", v, tag) == tag + "請求書"
    assert tag_subject(tag + "請求書", v, tag) == tag + "請求書"  # not twice
    assert tag_subject("請求書", v, "") == "請求書"
    header = authentication_results("gw\r\nBcc: x", v)
    assert "\r" not in header and "\n" not in header and header.startswith("gwBcc")


def test_subject_tag_must_be_one_line() -> None:
    with pytest.raises(ValueError):
        load_settings(auth={"subject_tag": "a\r\nBcc: x@example.com"})


def test_many_signatures_are_bounded(stub: DnsStub, key: tuple[bytes, bytes]) -> None:
    raw = mail()
    for _ in range(8):
        raw = sign(raw, key[0])
    v = evaluate(raw, "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert len(v.dkim) == 5


def test_dead_resolver_costs_one_timeout_not_one_per_message(
    stub: DnsStub, key: tuple[bytes, bytes]
) -> None:
    stub.silent.add("sel._domainkey.example.jp")
    lookup = make_lookup([stub.address], 0.3)
    raw = sign(mail(), key[0])
    for _ in range(3):
        v = evaluate(raw, "yamada@example.jp", cfg(stub), lookup)
        assert v.overall is Overall.UNKNOWN
    assert stub.queries.count("sel._domainkey.example.jp") <= 2  # dnspython may retry once


def test_overlong_from_is_unclear_without_the_stdlib_address_parser(
    stub: DnsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stdlib address parser is quadratic in specials (240 KB of '<>@,:' in a From took
    14 s in the trusted process, below the 256 KiB header cap): an over-long From is never
    handed to it, and says the sender is unclear."""
    import email.headerregistry

    parse = email.headerregistry.AddressHeader.value_parser

    def bounded(value: str) -> object:
        assert len(value) <= 8192, f"address parser given {len(value)} characters"
        return parse(value)

    monkeypatch.setattr(email.headerregistry.AddressHeader, "value_parser", staticmethod(bounded))
    for from_ in ("<>@,:" * 40_000, "Yamada <yamada@example.jp>, " + "x" * 20_000):
        v = evaluate(mail(from_), "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
        assert v.overall is Overall.SUSPICIOUS and "from_unclear" in v.reasons
    ok = evaluate(mail(), "yamada@example.jp", cfg(stub), make_lookup([stub.address], 1.0))
    assert "from_unclear" not in ok.reasons
