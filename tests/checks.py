"""Independent checks of what may reach the LGWAN side (used by many tests).

They use other tools than the gateway itself where possible (libmagic, pikepdf),
so a bug in a sanitizer cannot vouch for itself.
"""

from __future__ import annotations

import email
import email.policy
import io
from email.message import EmailMessage

import magic
import pikepdf

ALLOWED_HEADERS = {
    "received", "from", "to", "cc", "reply-to", "subject", "date", "message-id",
    "in-reply-to", "references", "x-mugai-id", "x-mugai-sanitized", "mime-version",
    "content-type", "content-transfer-encoding", "content-disposition",
    "authentication-results",  # issue 16: ours only (authserv-id = our hostname)
}  # fmt: skip
ALLOWED_TYPES = {"application/pdf", "image/png", "image/jpeg", "text/plain", "text/csv"}
ACTIVE_PDF_KEYS = {
    "/JS", "/JavaScript", "/OpenAction", "/AA", "/Launch", "/EmbeddedFile", "/EmbeddedFiles",
    "/RichMedia", "/XFA", "/AcroForm", "/URI", "/SubmitForm", "/GoToR", "/ImportData",
}  # fmt: skip
_MAGIC_OK = {
    "application/pdf": {"application/pdf"},
    "image/png": {"image/png"},
    "image/jpeg": {"image/jpeg"},
}


def pdf_active_keys(data: bytes) -> set[str]:
    """Every dictionary key in every object of the PDF that could act on open or click."""
    found: set[str] = set()
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for obj in pdf.objects:
            if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
                keys = set(obj.keys())
                found |= keys & ACTIVE_PDF_KEYS
        if pdf.Root.get("/Names") is not None:
            found.add("/Names")
    return found


def pdf_is_images_only(data: bytes) -> bool:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            resources = page.get("/Resources", pikepdf.Dictionary())
            if "/Font" in resources:
                return False
            xobjects = resources.get("/XObject", pikepdf.Dictionary())
            if not all(x.get("/Subtype") == "/Image" for x in xobjects.values()):
                return False
    return True


def check_clean_file(content_type: str, data: bytes) -> None:
    assert content_type in ALLOWED_TYPES, content_type
    if content_type in _MAGIC_OK:
        detected = magic.from_buffer(data[:65536], mime=True)
        assert detected in _MAGIC_OK[content_type], (content_type, detected)
    if content_type == "application/pdf":
        assert not pdf_active_keys(data), pdf_active_keys(data)
        assert pdf_is_images_only(data)
    if content_type.startswith("text/"):
        # libmagic names text many ways (text/x-c, ...): what matters is UTF-8 text, no binary.
        data.decode("utf-8")
        assert b"\x00" not in data


def check_delivered(data: bytes) -> EmailMessage:
    """A delivered message obeys DESIGN.md §4.4; returns it parsed."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    names = {k.lower() for k in msg.keys()}
    assert names <= ALLOWED_HEADERS, names - ALLOWED_HEADERS
    assert len(msg.get_all("Authentication-Results") or []) <= 1  # issue 16: never upstream's
    assert msg["X-Mugai-Id"]
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content_charset() == "utf-8"
    assert "【無害化のお知らせ】" in body.get_content()
    for part in msg.walk():
        ctype = part.get_content_type()
        assert ctype != "text/html"
        if part.is_multipart():
            assert ctype == "multipart/mixed", ctype
            continue
        if part is body:
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        check_clean_file(ctype, payload)
    return msg
