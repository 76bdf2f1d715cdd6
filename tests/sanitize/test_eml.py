"""Messages found as files (.eml attachments, mail in archives) are sanitized recursively."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

from gateway.model import Action
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.registry import sanitize_part
from gateway.settings import load_settings
from tests.jp import cp50220, encoded_words


def ctx() -> Context:
    limits = load_settings().sanitize
    return Context(limits=limits, pages=PageBudget(limits.max_pages_per_message))


def inner_mail() -> bytes:
    m = EmailMessage()
    m["From"] = "b@example.com"
    m["Subject"] = "転送"
    m.set_content("<p>見積 <a href='https://evil.example/x'>こちら</a></p>", subtype="html")
    m.add_attachment(b"MZ\x90\x00" + b"\x00" * 100, maintype="application",
                     subtype="octet-stream", filename="run.exe")  # fmt: skip
    m.add_attachment("メモ①".encode("cp932"), maintype="application",
                     subtype="octet-stream", filename="memo.txt")  # fmt: skip
    return m.as_bytes()


def test_attached_eml_becomes_text_and_its_parts_are_sanitized() -> None:
    report, files = sanitize_part(inner_mail(), "fwd.eml", "application/octet-stream", ctx(), "2")
    assert report.detected_type == "eml" and report.action is Action.CONVERTED
    names = [f.filename for f in files]
    assert names == ["fwd.txt", "memo.txt"]
    text = files[0].data.decode("utf-8")
    assert "Subject: 転送" in text and "hxxps://evil[.]example/x" in text
    assert "https://" not in text
    assert files[1].data.decode("utf-8") == "メモ①"
    by_name = {c.filename: c for c in report.children}
    assert by_name["run.exe"].action is Action.REMOVED
    assert by_name["memo.txt"].index.startswith("2.")


def test_mail_inside_a_zip_and_iso2022jp_headers() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: "
        + encoded_words("①件名㈱").encode()
        + b"\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
        + cp50220("本文髙")
        + b"\r\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mail.eml", raw)
    report, files = sanitize_part(buf.getvalue(), "mails.zip", "application/zip", ctx(), "1")
    [out] = files
    text = out.data.decode("utf-8")
    assert "Subject: ①件名㈱" in text and "本文髙" in text


def test_nesting_is_bounded() -> None:
    data = inner_mail()
    for _ in range(6):
        m = EmailMessage()
        m["Subject"] = "wrap"
        m.set_content("x")
        m.add_attachment(data, maintype="application", subtype="octet-stream",
                         filename="inner.eml")  # fmt: skip
        data = m.as_bytes()
    report, _ = sanitize_part(data, "outer.eml", "", ctx(), "1")
    deepest = report
    while deepest.children:
        deepest = deepest.children[-1]
    assert deepest.reasons == ("archive_limit",)
