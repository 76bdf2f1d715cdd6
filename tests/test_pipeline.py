"""sanitize_message on hostile and real-world mail (no network peers needed)."""

from __future__ import annotations

import email
import email.policy
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import Permanent, TooDeep, TooManyParts, Unparseable
from gateway.pipeline import sanitize_message
from gateway.sanitize.office import OfficePool
from gateway.settings import Settings, load_settings
from gateway.spool import JobMeta, new_id
from tests.checks import check_delivered
from tests.jp import cp50220, encoded_words

MAIL_SUFFIXES = {".eml", ".txt", ".msg", ".raw", ".mbox", ".email", ""}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(None, sanitize={"min_seconds": "60s"})


@pytest.fixture(scope="module")
def office(settings: Settings) -> Iterator[OfficePool]:
    pool = OfficePool.from_settings(settings.sanitize)
    yield pool
    pool.close()


def meta() -> JobMeta:
    return JobMeta(id=new_id(), kind="mail", mail_from="a@example.com",
                   rcpt_tos=("u@town.example.lg.jp",), received_at=time.time(),
                   helo="mx.example.com", peer="192.0.2.1")  # fmt: skip


def run(
    raw: bytes, settings: Settings, office: OfficePool | None = None
) -> email.message.EmailMessage:
    out = sanitize_message(raw, meta(), settings, office)
    return check_delivered(out.data)


def test_plain_mail_gets_notice_and_keeps_threading_headers(settings: Settings) -> None:
    raw = (
        b"From: a@example.com\r\nTo: u@town.example.lg.jp\r\nSubject: hello\r\n"
        b"Message-ID: <m1@example.com>\r\nReferences: <r1@x> <r2@x>\r\n"
        b"X-Spam: yes\r\nDKIM-Signature: v=1\r\n\r\nhello world\r\n"
    )
    msg = run(raw, settings)
    assert msg["Message-ID"] == "<m1@example.com>"
    assert msg["References"] == "<r1@x> <r2@x>"
    assert "X-Spam" not in msg and "DKIM-Signature" not in msg
    assert "hello world" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_header_injection_through_decoded_words_is_neutralised(settings: Settings) -> None:
    import base64

    evil = base64.b64encode(b"hi\r\nBcc: victim@example.com").decode()
    raw = (
        "From: a@example.com\r\nTo: u@town.example.lg.jp\r\n"
        f"Subject: =?utf-8?B?{evil}?=\r\n\r\nx\r\n"
    ).encode()
    out = sanitize_message(raw, meta(), settings, None).data
    assert b"\r\nBcc:" not in out
    assert "Bcc" not in check_delivered(out).keys()


def test_forwarded_message_is_quoted(settings: Settings) -> None:
    inner = (
        b"From: b@example.com\r\nSubject: "
        + encoded_words("内側①").encode()
        + (
            b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
            + cp50220("転送本文㈱")
            + b"\r\n"
        )
    )
    raw = (
        b"From: a@example.com\r\nTo: u@town.example.lg.jp\r\nSubject: fwd\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--XX--\r\n"
    )
    text = run(raw, settings).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "> Subject: 内側①" in text
    assert "> 転送本文㈱" in text


def test_endless_nesting_is_quarantined_not_crashing(settings: Settings) -> None:
    depth = 2000
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        + head
        + b"Content-Type: text/plain\r\n\r\nx\r\n"
    )
    with pytest.raises((TooDeep, TooManyParts, Unparseable)):
        sanitize_message(raw, meta(), settings, None)


def test_too_many_parts_is_quarantined(settings: Settings) -> None:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(300))
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    )
    with pytest.raises(TooManyParts):
        sanitize_message(raw, meta(), settings, None)


def test_huge_header_is_bounded(settings: Settings) -> None:
    raw = b"From: a@example.com\r\nSubject: " + b"A" * 300_000 + b"\r\n\r\nbody\r\n"
    with pytest.raises(Unparseable):
        sanitize_message(raw, meta(), settings, None)
    raw = b"From: a@example.com\r\nSubject: " + b"A" * 100_000 + b"\r\n\r\nbody\r\n"
    msg = run(raw, settings)
    assert len(str(msg["Subject"])) <= 2000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00",
        b"garbage without headers",
        b"Subject: \xff\xfe\x00\r\n\r\n\x80\x81",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"From: a\rSubject: bare CR\rTo: b\r\rbody\r",
        b"From: a\nSubject: bare LF\n\nbody\n.\nmore",
        b"Subject: =?ISO-2022-JP?B?GyRCJDMbKEI?=\r\n\r\nunterminated escape",
        b"Subject: =?x-unknown?Q?abc?= =?utf-8?B?****?=\r\n\r\nlying words",
    ],
)
def test_garbage_never_crashes(raw: bytes, settings: Settings) -> None:
    try:
        out = sanitize_message(raw, meta(), settings, None)
    except Permanent:
        return
    check_delivered(out.data)


def _corpus_mails(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in MAIL_SUFFIXES and p.name != "MANIFEST.md"
    )


@pytest.mark.corpus
@pytest.mark.timeout(1800)
def test_corpus_mail_ja_all_deliverable_and_readable(
    corpus: Path, settings: Settings, office: OfficePool
) -> None:
    outcomes: Counter[str] = Counter()
    for path in _corpus_mails(corpus / "mail-ja"):
        raw = path.read_bytes()
        try:
            out = sanitize_message(raw, meta(), settings, office)
        except Permanent as exc:
            outcomes[exc.reason] += 1
            continue
        msg = check_delivered(out.data)
        subject = str(msg.get("Subject", ""))
        assert "=?iso-2022-jp?" not in subject.lower(), (path.name, subject)
        outcomes["delivered"] += 1
    print(dict(outcomes))
    assert outcomes["delivered"] >= 0.9 * sum(outcomes.values())


@pytest.mark.corpus
@pytest.mark.timeout(3000)
def test_corpus_mail_and_adversarial_mail_never_crash(
    corpus: Path, settings: Settings, office: OfficePool
) -> None:
    outcomes: Counter[str] = Counter()
    for group in ("mail", "adversarial/mail"):
        for path in _corpus_mails(corpus / group):
            raw = path.read_bytes()
            try:
                out = sanitize_message(raw, meta(), settings, office)
            except Permanent as exc:
                outcomes[exc.reason] += 1
                continue
            check_delivered(out.data)
            outcomes["delivered"] += 1
    print(dict(outcomes))
    assert outcomes["delivered"] > 0


def test_display_name_with_comma_stays_one_address(settings: Settings) -> None:
    name = encoded_words("山田, 太郎")
    raw = (
        f"From: {name} <yamada@example.co.jp>\r\nTo: u@town.example.lg.jp, "
        f"{encoded_words('鈴木')} <suzuki@town.example.lg.jp>\r\nSubject: x\r\n\r\nbody\r\n"
    ).encode()
    msg = run(raw, settings)
    [sender] = msg["From"].addresses
    assert sender.display_name == "山田, 太郎" and sender.addr_spec == "yamada@example.co.jp"
    assert [a.addr_spec for a in msg["To"].addresses] == [
        "u@town.example.lg.jp",
        "suzuki@town.example.lg.jp",
    ]


def test_mail_loop_is_quarantined(settings: Settings) -> None:
    from gateway.errors import MailLoop
    from gateway.loopmark import token

    key = b"k" * 32

    def hop(n: int) -> bytes:
        jid = f"{n:022x}"
        mac = token(key, "mugai.example.lg.jp", jid)
        return (f"Received: from x ([192.0.2.1]) by mugai.example.lg.jp (mugai) with ESMTP "
                f"id {jid} (loop {mac}); date\r\n").encode()  # fmt: skip

    raw = hop(1) + hop(2) + hop(3) + b"From: a@example.com\r\nSubject: loop\r\n\r\nbody\r\n"
    with pytest.raises(MailLoop):
        sanitize_message(raw, meta(), settings, None, key)
    ok = hop(1) + hop(2) + b"From: a@example.com\r\nSubject: ok\r\n\r\nbody\r\n"
    sanitize_message(ok, meta(), settings, None, key)
    # Forged hops (no token, or another key's) never count (issue 13; tests/reliability/).
    forged = b"Received: from x ([192.0.2.1]) by mugai.example.lg.jp (mugai) with ESMTP id 1; d\r\n"
    sanitize_message(forged * 3 + ok, meta(), settings, None, key)
    sanitize_message(raw, meta(), settings, None, b"other-key" * 4)
