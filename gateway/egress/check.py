"""The egress check: the rebuilt message, as bytes, against the delivery contract.

Refuses (raises an ``EgressRefused`` subclass, which quarantines the mail) a live link or a
hidden character in any text part or file name, a live formula in a CSV, any MIME type
outside the allowed set, a PDF with anything but pages of images, an image that does not
decode. Any failure of the check itself is a refusal too: nothing leaves unchecked.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import logging
import re
from email.message import EmailMessage, Message
from typing import Final

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from PIL import Image

from gateway.egress.links import hidden_characters, live_links
from gateway.errors import (
    EgressFormula,
    EgressHiddenText,
    EgressImage,
    EgressLiveLink,
    EgressPdf,
    EgressRefused,
    EgressType,
)

log = logging.getLogger(__name__)

ALLOWED_LEAF_TYPES: Final = frozenset(
    {"text/plain", "text/csv", "application/pdf", "image/png", "image/jpeg"}
)
_EXTENSIONS: Final = {
    "text/plain": (".txt",), "text/csv": (".csv",), "application/pdf": (".pdf",),
    "image/png": (".png",), "image/jpeg": (".jpg", ".jpeg"),
}  # fmt: skip
_MAX_PARTS: Final = 10_000
_MAX_PIXELS: Final = 200_000_000
# PDF names that mean actions, scripts, forms, links or embedded files; none is ever in a
# page-of-images PDF, so their mere presence is a refusal.
_PDF_FORBIDDEN: Final = re.compile(
    rb"/(?:JavaScript|JS|OpenAction|AA|Launch|URI|SubmitForm|ImportData|GoToR|GoToE|"
    rb"EmbeddedFile|EmbeddedFiles|FileAttachment|AcroForm|XFA|RichMedia|Annots|ObjStm|"
    rb"Sound|Movie|Rendition|Names)(?![A-Za-z0-9])"
)
_FORMULA_START: Final = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER: Final = re.compile(r"[+-]?[0-9.,]+(?:[eE][+-]?[0-9]+)?%?")


def check_message(data: bytes) -> None:
    """Raise ``EgressRefused`` (a subclass naming the cause) unless ``data`` is deliverable."""
    try:
        _check_message(data)
    except EgressRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - a check that cannot run refuses
        log.exception("egress check failed")
        raise EgressRefused(f"egress check failed: {type(exc).__name__}") from exc


def _check_message(data: bytes) -> None:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for name in ("Subject", "From", "To", "Cc", "Reply-To"):
        value = str(msg.get(name, ""))
        if any(unicodedata_cc(ch) for ch in value):
            raise EgressHiddenText(f"control character in {name}")
    count = 0
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        count += 1
        if count > _MAX_PARTS:
            raise EgressType("too many parts")
        ctype = part.get_content_type()
        if part.is_multipart():
            if ctype != "multipart/mixed" or part is not msg:
                raise EgressType(f"{ctype} inside the rebuilt message")
            payload = part.get_payload()
            assert isinstance(payload, list)
            stack.extend(p for p in payload if isinstance(p, Message))
            continue
        filename = part.get_filename() or ""
        data_bytes = part.get_payload(decode=True)
        if not isinstance(data_bytes, bytes):
            raise EgressType(f"{ctype} without a decodable payload")
        _check_file(filename, ctype, data_bytes)


def unicodedata_cc(ch: str) -> bool:
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F


def check_file(filename: str, content_type: str, data: bytes) -> None:
    """One delivered file (the file gateway's output) against the contract."""
    try:
        _check_file(filename, content_type, data)
    except EgressRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - a check that cannot run refuses
        log.exception("egress check failed")
        raise EgressRefused(f"egress check failed: {type(exc).__name__}") from exc


def _check_file(filename: str, content_type: str, data: bytes) -> None:
    if content_type not in ALLOWED_LEAF_TYPES:
        raise EgressType(f"{content_type} is not an allowed output type")
    _check_text(filename, "file name")
    if content_type.startswith("text/"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EgressType("text part is not UTF-8") from exc
        _check_text(text, content_type)
        if content_type == "text/csv":
            _check_csv(text)
    elif content_type == "application/pdf":
        _check_pdf(data)
    else:
        _check_image(data, content_type)
    # Windows opens a file by its extension, not by its type: the name must say the type.
    if filename and not filename.lower().endswith(_EXTENSIONS[content_type]):
        raise EgressType(f"{content_type} file named with another extension")


def _check_text(text: str, where: str) -> None:
    hidden = hidden_characters(text)
    if hidden:
        raise EgressHiddenText(f"{where}: {', '.join(hidden)}")
    links = live_links(text)
    if links:
        raise EgressLiveLink(f"{where}: {len(links)} live link(s), first {links[0]!r}")


def _check_csv(text: str) -> None:
    sample = text.lstrip("\ufeff")[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    if not text.startswith("\ufeff"):
        raise EgressFormula("CSV without a BOM (Excel would read it as Shift_JIS)")
    # Excel reads a .csv file with commas whatever it holds: both readings are checked.
    for sep in sorted({delimiter, ","}):
        rows = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=sep)
        for row in rows:
            for cell in row:
                core = cell.lstrip(" \u3000")
                if len(core) > 1 and core[0] in _FORMULA_START and not _NUMBER.fullmatch(core):
                    raise EgressFormula(f"CSV cell starts a formula: {core[:20]!r}")


def _check_pdf(data: bytes) -> None:
    if not data.startswith(b"%PDF-"):
        raise EgressPdf("not a PDF")
    found = _PDF_FORBIDDEN.search(_outside_streams(data))
    if found:
        raise EgressPdf(f"PDF contains {found.group(0).decode('ascii', 'replace')}")
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise EgressPdf(f"PDF does not open: {exc}") from exc
    try:
        if len(doc) == 0:
            raise EgressPdf("PDF without pages")
        if pdfium_raw.FPDFDoc_GetAttachmentCount(doc) or pdfium_raw.FPDF_GetFormType(doc):
            raise EgressPdf("PDF with attachments or forms")
        if pdfium_raw.FPDFDoc_GetJavaScriptActionCount(doc) > 0:
            raise EgressPdf("PDF with JavaScript")
        for index in range(len(doc)):
            page = doc[index]
            try:
                if pdfium_raw.FPDFPage_GetAnnotCount(page) != 0:
                    raise EgressPdf(f"page {index + 1} has annotations")
                for obj in page.get_objects(max_depth=1):
                    if obj.type != pdfium_raw.FPDF_PAGEOBJ_IMAGE:
                        raise EgressPdf(f"page {index + 1} holds a non-image object")
            finally:
                page.close()
    finally:
        doc.close()


_STREAM_START: Final = re.compile(rb">>\s*stream\r?\n")


def _outside_streams(data: bytes) -> bytes:
    """The PDF without its stream bodies: compressed image bytes would match names by chance."""
    kept: list[bytes] = []
    pos = 0
    for m in _STREAM_START.finditer(data):
        if m.start() < pos:
            continue  # inside a stream already skipped
        kept.append(data[pos : m.end()])
        end = data.find(b"endstream", m.end())
        if end == -1:
            raise EgressPdf("unterminated stream")
        pos = end
    kept.append(data[pos:])
    return b"".join(kept)


def _check_image(data: bytes, content_type: str) -> None:
    expected = {"image/png": "PNG", "image/jpeg": "JPEG"}[content_type]
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != expected:
                raise EgressImage(f"{content_type} holds {image.format}")
            width, height = image.size
            if width * height > _MAX_PIXELS:
                raise EgressImage(f"{width}x{height} pixels")
            image.load()
    except EgressImage:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for broken images
        raise EgressImage(f"image does not decode: {type(exc).__name__}") from exc
