"""Property: the egress checker finds nothing live in anything the gateway delivers.

Random text built from URL fragments, controls, confusables and Japanese goes into every
place the recipient sees (body, HTML body, forwarded headers, file names, text and CSV
attachments); the rebuilt message must pass the independent checker. A disagreement
between the disarmer and the checker is a bug in one of them (and would quarantine mail).
"""

from __future__ import annotations

import time
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.egress.check import check_message
from gateway.pipeline import sanitize_message
from gateway.settings import load_settings
from gateway.spool import JobMeta, new_id

SETTINGS = load_settings(None)

FRAGMENTS = [
    "http", "https", "HTTPS", "ftp", "file", "smb", "ms-msdt", "search-ms", "ms-word",
    "javascript", "data", "mhtml", "www", "www3", ":", "//", "/", "\\\\", "\\", ".", "。",
    "．", "ｈｔｔｐｓ", "：", "／／", "evil", "example", "com", "co.jp", "me", "zip", "lg.jp",
    "@", "-", "_", "?u=", "#", "[.]", "[:]", "hxxps", " ", "\n", "\t", "\r", "\x00", "\x01",
    "\x7f", "\x85", "\u200b", "\u202e", "\u00ad", "\ufeff", "\u2028", "\ufdd0", "ﬁ", "①",
    "髙﨑", "㈱", "日本語", "=", "+", "'", '"', ",", ";", "<", ">", "(", ")", "C:", "a", "1",
]  # fmt: skip
text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map(
    "".join
)


def meta() -> JobMeta:
    return JobMeta(id=new_id(), kind="mail", mail_from="a@example.com",
                   rcpt_tos=("u@town.example.lg.jp",), received_at=time.time(),
                   helo="mx.example.com", peer="192.0.2.1")  # fmt: skip


def build(body: str, html: str, subject: str, name: str, attachment: str, cell: str) -> bytes:
    inner = EmailMessage()
    inner["From"] = "a@example.com"
    inner["Subject"] = " ".join(subject.split()) or "x"
    inner.set_content(body or "x")
    m = EmailMessage()
    m["From"] = "b@example.com"
    m["To"] = "u@town.example.lg.jp"
    m["Subject"] = "fwd"
    m.set_content(body or "x")
    m.add_alternative(f"<p>{html}</p><a href='{html}'>{body}</a>", subtype="html")
    m.add_attachment(inner)
    m.add_attachment(attachment.encode("utf-8", "surrogatepass"), maintype="text",
                     subtype="plain", filename=(name or "a") + ".txt")  # fmt: skip
    m.add_attachment(f"h1,h2\r\n{cell},{body}\r\n".encode("utf-8", "surrogatepass"),
                     maintype="text", subtype="csv", filename="t.csv")  # fmt: skip
    return m.as_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text, text, text, text, text, text)
def test_nothing_the_gateway_delivers_is_refused_by_the_checker(
    body: str, html: str, subject: str, name: str, attachment: str, cell: str
) -> None:
    try:
        raw = build(body, html, subject, name, attachment, cell)
    except (ValueError, UnicodeError, TypeError):
        return  # the stdlib cannot even write such a message; nothing to deliver
    out = sanitize_message(raw, meta(), SETTINGS, None)
    check_message(out.data)  # raises EgressRefused naming what is live
