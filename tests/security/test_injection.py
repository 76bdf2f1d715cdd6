"""Header injection and path traversal through names that reach the delivered message: the
notice, Content-Disposition, archive members. (The admin API's download header is covered in
tests/api/test_messages.py.)"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import zipfile
from email.message import EmailMessage

import pytest

from gateway.pipeline import sanitize_message
from gateway.settings import load_settings
from gateway.spool import JobMeta
from tests.checks import check_delivered

SETTINGS = load_settings(None)
META = JobMeta(id="sec00000000001", kind="mail", mail_from="a@example.com",
               rcpt_tos=("u@town.example.lg.jp",), peer="192.0.2.1", helo="x.example")  # fmt: skip
BAD_CHARS = ("\r", "\n", "\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\x00")


def rebuild(raw: bytes) -> tuple[bytes, EmailMessage]:
    out = sanitize_message(raw, META, SETTINGS, None).data
    return out, check_delivered(out)


def head(out: bytes) -> list[bytes]:
    return out.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def header_names(out: bytes) -> list[str]:
    return [line.split(b":", 1)[0].decode().lower() for line in head(out)
            if line and line[:1] not in (b" ", b"\t")]  # fmt: skip


EVIL = base64.b64encode(b"hi\r\nBcc: victim@example.com\r\nX-Evil: 1").decode()


@pytest.mark.parametrize(
    "header",
    [
        f"Subject: =?utf-8?B?{EVIL}?=",
        f"From: =?utf-8?B?{EVIL}?= <a@example.com>",
        "Subject: =?utf-8?Q?hi=0D=0ABcc:_v@example.com?=",
        # Found by fuzzing (bench/fuzz): encoded-words our decoder leaves alone (empty or
        # over-long charset label) are decoded again by the email package when the header is
        # set, CR/LF included, and the serialised message gets extra header lines.
        f"Subject: =??B?{EVIL}?=",
        f"From: =??B?{EVIL}?= <a@example.com>",
        f"Subject: =?{'x' * 70}?B?{EVIL}?=",
        f"Reply-To: =??B?{EVIL}?= <r@example.com>",
    ],
)
def test_encoded_crlf_never_makes_a_header(header: str) -> None:
    raw = f"{header}\r\nTo: u@town.example.lg.jp\r\n\r\nbody\r\n".encode()
    out, _ = rebuild(raw)
    names = header_names(out)
    assert "bcc" not in names and "x-evil" not in names, head(out)
    assert not any(b"\r" in line for line in head(out)), head(out)


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_unicode_line_separators_in_a_subject_are_delivered(sep: str) -> None:
    """Found by fuzzing: U+2028 in a subject made the rebuild raise ValueError, so the whole
    mail was quarantined as internal_error instead of delivered."""
    subject = base64.b64encode(f"会議{sep}のご案内".encode()).decode()
    raw = (f"Subject: =?utf-8?B?{subject}?=\r\nFrom: {sep}a <a@example.com>\r\n"
           "To: u@town.example.lg.jp\r\n\r\nbody\r\n").encode()  # fmt: skip
    _, msg = rebuild(raw)
    assert "会議" in str(msg["Subject"]) and sep not in str(msg["Subject"])


def attachment_mail(filename: str, data: bytes, subtype: str = "octet-stream") -> bytes:
    """Raw MIME with the name RFC 2231-encoded, so any byte (CR, LF, NUL) can be in it."""
    encoded = "".join(f"%{b:02X}" for b in filename.encode("utf-8"))
    return (
        (
            "From: a@example.com\r\nTo: u@town.example.lg.jp\r\nSubject: files\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n"
            f"--b\r\nContent-Type: application/{subtype}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename*=utf-8''{encoded}\r\n\r\n"
        ).encode()
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )


HOSTILE_NAMES = [
    "../../../../etc/cron.d/evil.txt",
    "..\\..\\Windows\\System32\\evil.txt",
    "/etc/passwd.txt",
    "C:\\Users\\Public\\evil.txt",
    "\\\\server\\share\\evil.txt",
    "report\u202etxt.exe",
    "a\r\nContent-Type: text/html\r\n\r\n<script>.txt",
    'quote".txt',
    "null\x00byte.txt",
    "\u2066isolate\u2069.txt",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_attachment_names_are_clean_in_disposition_and_notice(name: str) -> None:
    out, msg = rebuild(attachment_mail(name, "ただのテキスト\r\n".encode()))
    assert "content-type" not in [n for n in header_names(out) if n != "content-type"]
    body = msg.get_body(("plain",))
    assert body is not None
    notice = body.get_content()
    for att in msg.iter_attachments():
        filename = att.get_filename() or ""
        assert "/" not in filename and "\\" not in filename and ".." not in filename, filename
        assert not any(c in filename for c in BAD_CHARS), repr(filename)
        disposition = att["Content-Disposition"]
        assert "\r" not in str(disposition) and "\n" not in str(disposition)
    # The notice lists the original name, but never with control or bidi characters.
    assert not any(c in notice for c in BAD_CHARS if c not in "\r\n"), repr(notice[:400])
    assert "<script>" not in notice or "Content-Type: text/html\r\n" not in notice
    # No second MIME part appears out of a name.
    assert all(p.get_content_type() != "text/html" for p in msg.walk())


def zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def test_archive_member_traversal_never_reaches_an_output_name() -> None:
    members = {
        "ok.txt": b"fine\r\n",
        "../../../../tmp/evil.txt": b"evil\r\n",
        "/etc/evil.txt": b"evil\r\n",
        "C:\\evil.txt": b"evil\r\n",
        "dir/../../evil2.txt": b"evil\r\n",
    }
    out, msg = rebuild(attachment_mail("files.zip", zip_with(members), subtype="zip"))
    names = [a.get_filename() or "" for a in msg.iter_attachments()]
    assert "ok.txt" in names
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith(".."), names
    body = msg.get_body(("plain",))
    assert body is not None and "unsafe_path" in body.get_content()


def test_display_names_cannot_add_recipients() -> None:
    raw = (
        b'From: "Boss\r\n\tBcc: victim@example.com" <a@example.com>\r\n'
        b'To: "x@evil.example, y@evil.example" <u@town.example.lg.jp>\r\n'
        b"Subject: names\r\n\r\nbody\r\n"
    )
    out, msg = rebuild(raw)
    assert "bcc" not in header_names(out)
    assert [a.addr_spec for a in msg["To"].addresses] == ["u@town.example.lg.jp"]
    assert email.message_from_bytes(out, policy=email.policy.default)["Bcc"] is None


@pytest.mark.parametrize("header", ["Message-ID", "In-Reply-To", "References"])
def test_non_ascii_message_ids_do_not_stop_delivery(header: str) -> None:
    """Found by atheris: an 8-bit Message-ID made serialising the rebuilt message raise
    UnicodeEncodeError, so the whole mail was quarantined as internal_error."""
    raw = (
        f"{header}: <\u3042\u3044@example.jp>\r\nFrom: a@example.com\r\n"
        "To: u@town.example.lg.jp\r\nSubject: id\r\n\r\nbody\r\n"
    ).encode()
    out, _ = rebuild(raw)
    assert out.isascii()
