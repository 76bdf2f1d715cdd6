"""build_message / received_line / build_withheld_notice: the rebuilt message carries only what
we write, each header on one line, nothing injected from the sender's values."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from gateway.mime.rebuild import (
    SANITIZED_HEADER,
    build_message,
    build_withheld_notice,
    received_line,
)
from gateway.model import CleanFile


def rebuilt(headers: dict[str, str] | None = None, **kw: object) -> EmailMessage:
    args: dict[str, object] = {
        "headers": headers or {},
        "addresses": {"from": [("佐藤", "sato@example.com")], "to": [("", "u@town.lg.jp")]},
        "body": "本文\n",
        "files": (),
        "mugai_id": "0190aa",
        "tokens": (),
        "received": "from x by y; date",
    }
    args.update(kw)
    raw = build_message(**args)  # type: ignore[arg-type]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_a_crlf_in_the_subject_injects_no_header() -> None:
    msg = rebuilt({"subject": "hello\r\nBcc: victim@example.com\u2028X-Evil: 1"})
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "hello Bcc: victim@example.com X-Evil: 1"


def test_bidi_and_zero_width_characters_leave_the_subject() -> None:
    assert rebuilt({"subject": "請求書\u202e\u200bfdp.exe"})["Subject"] == "請求書fdp.exe"


def test_an_encoded_word_lookalike_is_never_decoded_a_second_time() -> None:
    msg = rebuilt({"subject": "=?utf-8?b?5pys?= literal"})
    assert str(msg["Subject"]) == "= ?utf-8?b?5pys?= literal"  # not "本 literal"


def test_a_double_encoded_subject_shows_no_live_link_to_the_reader() -> None:
    """Attack: the Subject is an encoded-word whose text is another encoded-word hiding a URL.
    The gateway decodes once and disarms what it sees; the reader's client must not be able to
    decode the rest (found while writing these tests: it delivered a live link)."""
    import base64
    import time

    from gateway.egress.links import live_links
    from gateway.pipeline import sanitize_message
    from gateway.settings import load_settings
    from gateway.spool import JobMeta, new_id

    def word(text: str) -> str:
        return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="

    subject = word(word("見て http://evil.example.com/x"))
    raw = (f"From: a@example.com\r\nTo: u@town.example.lg.jp\r\nSubject: {subject}\r\n"
           "Message-ID: <q@x>\r\n\r\nhi\r\n").encode()  # fmt: skip
    meta = JobMeta(id=new_id(), kind="mail", mail_from="a@example.com",
                   rcpt_tos=("u@town.example.lg.jp",), received_at=time.time())  # fmt: skip
    out = sanitize_message(raw, meta, load_settings(None), None)
    seen = str(email.message_from_bytes(out.data, policy=email.policy.default)["Subject"])
    assert "evil.example.com" not in seen and not live_links(seen), seen


def test_threading_headers_are_kept_and_garbage_ids_dropped() -> None:
    msg = rebuilt({
        "message-id": "<m1@example.com>",
        "references": "<r1@x> junk <r2@x> <bad id@x>",
        "in-reply-to": "no brackets",
    })  # fmt: skip
    assert msg["Message-ID"] == "<m1@example.com>"
    assert msg["References"] == "<r1@x> <r2@x>"
    assert msg["In-Reply-To"] is None


def test_addresses_we_cannot_vouch_for_keep_only_the_name() -> None:
    msg = rebuilt(addresses={"from": [("社長", "ceo@@evil"), ("x", "a\"b@example.com")],
                             "to": [("", "u@town.lg.jp")]})  # fmt: skip
    assert msg["From"].addresses[0].display_name == "社長"
    assert all(a.addr_spec in ("", "<>") for a in msg["From"].addresses)
    assert msg["To"].addresses[0].addr_spec == "u@town.lg.jp"


def test_tokens_id_and_files() -> None:
    pdf = CleanFile("a.pdf", "application/pdf", b"%PDF-1.4 x")
    txt = CleanFile("メモ.txt", "text/plain", "テキスト".encode())
    msg = rebuilt(tokens=("REP_LINK", "CONV_ATTACH", "REP_LINK"), files=(pdf, txt))
    assert msg[SANITIZED_HEADER] == "CONV_ATTACH REP_LINK"
    assert msg["X-Mugai-Id"] == "0190aa"
    parts = list(msg.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("a.pdf", "application/pdf"),
        ("メモ.txt", "text/plain"),
    ]
    assert parts[0].get_content() == b"%PDF-1.4 x"
    assert rebuilt()[SANITIZED_HEADER] == "NONE"


def test_the_date_is_kept_when_valid_and_made_when_not() -> None:
    assert rebuilt({"date": "Tue, 1 Dec 2026 10:00:00 +0900"})["Date"].startswith("Tue, 01 Dec")
    assert rebuilt({"date": "not a date"})["Date"]  # ours, never the garbage


def test_received_line_keeps_only_safe_characters() -> None:
    line = received_line(helo="mx\r\nX-Evil: 1", peer="192.0.2.1; rm", hostname="gw.lg.jp",
                         mugai_id="0190aa", rcpt="u@x\nBcc: v")  # fmt: skip
    assert "\n" not in line and "\r" not in line
    assert line.startswith("from mxX-Evil:1 ([192.0.2.1]) by gw.lg.jp (mugai) with ESMTP id 0190aa")
    assert " for <" not in line  # a recipient with a line break is left out


def test_withheld_notice_carries_none_of_the_message() -> None:
    raw = build_withheld_notice(
        mail_from="a@example.com", rcpt=["u@town.lg.jp"], text="保留しました",
        mugai_id="0190aa", hostname="gw.lg.jp",
    )  # fmt: skip
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg[SANITIZED_HEADER] == "WITHHELD"
    assert msg["From"].addresses[0].addr_spec == "postmaster@gw.lg.jp"
    assert msg.get_body().get_content().strip() == "保留しました"  # type: ignore[union-attr]
    assert not list(msg.iter_attachments())
