"""The verdict on a delivered mail: our Authentication-Results only, the notice block,
the optional subject tag and the record (scan.auth), through sanitize_message/Pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.pipeline import Pipeline, sanitize_message
from gateway.scan.clamd import ClamdScanner
from gateway.settings import Settings, load_settings
from gateway.spool import JobMeta, new_id
from tests.auth.dns_server import DnsStub
from tests.auth.test_auth import TRUSTED, mail, sign
from tests.auth.test_auth import key as key  # noqa: F401 - fixture
from tests.checks import check_delivered

TAG = "【なりすましの疑い】"


@pytest.fixture
def stub(key: tuple[bytes, bytes]) -> Iterator[DnsStub]:  # noqa: F811
    server = DnsStub()
    server.txt["sel._domainkey.example.jp"] = key[1]
    yield server
    server.close()


def settings(stub: DnsStub, **auth: object) -> Settings:
    return load_settings(
        smtp={"hostname": "mugai.town.example.lg.jp"},
        auth={"nameservers": [stub.address], "dns_timeout": "1s",
              "trusted_authserv_ids": [TRUSTED], **auth},
    )  # fmt: skip


def meta(mail_from: str) -> JobMeta:
    return JobMeta(id=new_id(), kind="mail", mail_from=mail_from,
                   rcpt_tos=("soumu@town.example.lg.jp",), received_at=time.time(),
                   helo="mx.example.jp", peer="192.0.2.1")  # fmt: skip


def test_signed_mail_is_stamped_pass(stub: DnsStub, key: tuple[bytes, bytes]) -> None:  # noqa: F811
    upstream = f"Authentication-Results: {TRUSTED}; dmarc=pass header.from=example.jp\r\n"
    raw = sign(mail(), key[0])
    out = sanitize_message(upstream.encode() + raw, meta("yamada@example.jp"),
                           settings(stub, subject_tag=TAG), None)  # fmt: skip
    msg = check_delivered(out.data)
    [ar] = msg.get_all("Authentication-Results")
    assert str(ar).startswith("mugai.town.example.lg.jp; dkim=pass header.d=example.jp")
    assert f"dmarc=pass (from {TRUSTED})" in str(ar)
    assert msg["Subject"] == "請求書"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "送信元の認証: 送信元は認証されています" in body
    assert body.index("送信元の認証") < body.index("【無害化のお知らせ】")
    assert out.report.auth["overall"] == "pass"
    assert out.report.auth["dkim"][0]["domain"] == "example.jp"


def test_spoofed_mail_is_tagged_and_warned(stub: DnsStub) -> None:
    forged = f"Authentication-Results: {TRUSTED}; dmarc=pass\r\n"
    raw = mail('"soumu@town.example.lg.jp" <soumu@town-example.evil.example>')
    # The forged "pass" sits below a Received line: written by the sender, not believed.
    raw = b"Received: from evil by mx.pref.example.lg.jp\r\n" + forged.encode() + raw
    out = sanitize_message(raw, meta("bounce@evil.example"), settings(stub, subject_tag=TAG), None)
    msg = check_delivered(out.data)
    assert msg["Subject"] == TAG + "請求書"
    [ar] = msg.get_all("Authentication-Results")
    assert "x-mugai-verdict=suspicious" in str(ar) and "dmarc=" not in str(ar)
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "なりすましの疑いがあります" in body and "possible spoofing" in body
    assert "town[.]example[.]lg[.]jp" in body
    assert out.report.auth["overall"] == "suspicious"
    assert "display_name_lookalike" in out.report.auth["reasons"]


def test_no_tag_by_default(stub: DnsStub) -> None:
    raw = mail('"soumu@town.example.lg.jp" <x@evil.example>')
    out = sanitize_message(raw, meta("x@evil.example"), settings(stub), None)
    assert check_delivered(out.data)["Subject"] == "請求書"


async def test_verdict_reaches_the_record(
    stub: DnsStub,
    key: tuple[bytes, bytes],
    clamd_address: str,  # noqa: F811
) -> None:
    pipe = Pipeline(settings(stub), ClamdScanner(clamd_address, timeout=30))
    try:
        outcome = await pipe.process(meta("yamada@example.jp"), sign(mail(), key[0]))
    finally:
        pipe.close()
    assert outcome.report.scan is not None and outcome.report.scan.clean
    assert outcome.report.scan.auth["overall"] == "pass"
    # What the store keeps (and GET /api/v1/messages/{id} shows as "scan").
    from gateway.serialize import plain

    assert plain(outcome.report.scan)["auth"]["dkim"][0]["result"] == "pass"
