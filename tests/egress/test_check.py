"""The egress checker on its own: what it refuses, and that real sanitizer output passes."""

from __future__ import annotations

import io
from email.message import EmailMessage

import img2pdf
import pytest
from PIL import Image

from gateway.egress.check import check_file, check_message
from gateway.errors import (
    EgressFormula,
    EgressHiddenText,
    EgressImage,
    EgressLiveLink,
    EgressPdf,
    EgressRefused,
    EgressType,
)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buf, "PNG")
    return buf.getvalue()


def image_pdf() -> bytes:
    return bytes(img2pdf.convert([png(), png()]))


def message(body: str, *attachments: tuple[str, str, bytes]) -> bytes:
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["Subject"] = "件名"
    m.set_content(body, charset="utf-8", cte="base64")
    for name, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        if maintype == "text":
            m.add_attachment(data.decode(), subtype=subtype, charset="utf-8", filename=name)
        else:
            m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes()


def test_clean_rebuilt_message_passes() -> None:
    check_message(
        message(
            "hxxps://evil[.]com/ taro@city.example.lg.jp C:\\Users\\x",
            ("a.pdf", "application/pdf", image_pdf()),
            ("b.png", "image/png", png()),
            ("c.csv", "text/csv", "\ufeffa,'=1+1,-5,+81\r\n".encode()),
        )
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("see https://evil.com/", EgressLiveLink),
        ("see evil-corp.me/login", EgressLiveLink),
        ("\\\\host\\share", EgressLiveLink),
        ("ms-msdt:/id x", EgressLiveLink),
        ("ｈｔｔｐｓ：／／ｅｖｉｌ．ｃｏｍ", EgressLiveLink),
        ("bidi \u202e here", EgressHiddenText),
        ("zero\u200bwidth", EgressHiddenText),
    ],
)
def test_live_text_is_refused(body: str, error: type[EgressRefused]) -> None:
    with pytest.raises(error):
        check_message(message(body))


def test_live_file_name_is_refused() -> None:
    with pytest.raises(EgressLiveLink):
        check_message(message("ok", ("www.evil.com.png", "image/png", png())))


@pytest.mark.parametrize(
    ("ctype", "data", "error"),
    [
        ("text/html", b"<p>x</p>", EgressType),
        ("application/octet-stream", b"MZ", EgressType),
        ("application/pdf", b"%PDF-1.4 /JavaScript (x)", EgressPdf),
        ("application/pdf", b"not a pdf", EgressPdf),
        ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, EgressImage),
        ("image/jpeg", png(), EgressImage),
        ("text/csv", "\ufeff=cmd|' /C calc'!A0\r\n".encode(), EgressFormula),
        ("text/csv", b"a,b\r\n", EgressFormula),  # no BOM
        ("text/plain", b"\xff\xfe", EgressType),
    ],
)
def test_files_outside_the_contract(ctype: str, data: bytes, error: type[EgressRefused]) -> None:
    with pytest.raises(error):
        check_file("x", ctype, data)


def test_pdf_with_an_annotation_or_text_is_refused() -> None:
    pdf = image_pdf()
    # A link annotation added to the first page dictionary.
    tampered = pdf.replace(b"/Type /Page >>", b"/Type /Page /Annots [] >>", 1)
    with pytest.raises(EgressPdf):
        check_file("x.pdf", "application/pdf", tampered)


def test_pdf_with_text_objects_is_refused() -> None:
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument.new()
    page = doc.new_page(100, 100)
    path = raw.FPDFPageObj_CreateNewPath(0, 0)
    raw.FPDFPath_LineTo(path, 50, 50)
    raw.FPDFPath_SetDrawMode(path, 0, 1)  # stroked: a vector drawing, not an image
    raw.FPDFPage_InsertObject(page, path)
    raw.FPDFPage_GenerateContent(page)
    buf = io.BytesIO()
    doc.save(buf)
    with pytest.raises(EgressPdf):
        check_file("x.pdf", "application/pdf", buf.getvalue())


def test_multipart_alternative_inside_is_refused() -> None:
    m = EmailMessage()
    m.set_content("a")
    m.add_alternative("<p>a</p>", subtype="html")
    with pytest.raises(EgressType):
        check_message(m.as_bytes())


def test_broken_input_refuses_instead_of_passing() -> None:
    with pytest.raises(EgressRefused):
        check_message(b"\xff" * 100)


@pytest.mark.parametrize(
    ("name", "ctype", "data"),
    [
        ("invoice.hta", "text/plain", b"ok\n"),
        ("a.html", "text/plain", b"ok\n"),
        ("a.url", "text/plain", b"ok\n"),
        ("a.txt.lnk", "text/plain", b"ok\n"),
        ("list.xlsx", "text/csv", "\ufeffa,b\r\n".encode()),
        ("a.svg", "image/png", png()),
        ("a.exe", "application/pdf", image_pdf()),
    ],
)
def test_file_name_extension_outside_the_contract_is_refused(
    name: str, ctype: str, data: bytes
) -> None:
    """Windows opens a file by its extension, not its MIME type: a clean text part named
    .hta runs as a program. Every delivered name ends in its type's extension."""
    with pytest.raises(EgressType):
        check_message(message("ok", (name, ctype, data)))
    with pytest.raises(EgressType):
        check_file(name, ctype, data)
    good = {"text/plain": "a.txt", "text/csv": "a.csv", "image/png": "a.png"}
    check_file(good.get(ctype, "a.pdf"), ctype, data)


@pytest.mark.parametrize(
    "body",
    [
        "詳しくは…hxxps://example[.]com/ をご覧ください",
        "続きは‥hxxp://example[.]jp",
        "-hxxps://a[.]jp",
    ],
)
def test_ellipsis_before_a_disarmed_link_is_not_live(body: str) -> None:
    """NFKC folds "…" to "...": the dots are not part of the scheme (a scheme starts with a
    letter), so a disarmed link after a Japanese ellipsis does not quarantine the mail."""
    check_message(message(body))


@pytest.mark.parametrize("body", ["…https://evil.com/", "1https://evil.com/", ".ms-msdt:/x"])
def test_junk_before_a_live_scheme_is_still_live(body: str) -> None:
    with pytest.raises(EgressLiveLink):
        check_message(message(body))
