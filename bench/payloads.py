"""Generated inputs: Japanese mails, text PDFs, a small docx, incompressible images.

Everything is built here in code (no corpus files, no extra dependencies), deterministic for a
given seed so runs stay comparable.
"""

from __future__ import annotations

import io
import random
import zipfile
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

SENDER = "sender@example.com"
RCPT = "user@town.example.lg.jp"

_JA_LINES = (
    "いつもお世話になっております。",
    "令和六年度の会議資料を送付いたします。ご確認のほどよろしくお願いいたします。",
    "添付の見積書について、ご不明な点がございましたらご連絡ください。",
    "住民説明会の日程は来週の水曜日、午後二時からを予定しております。",
    "なお、本件は総務課が担当いたします。",
)


def ja_text(lines: int, seed: int = 0) -> str:
    rnd = random.Random(seed)
    return "\n".join(rnd.choice(_JA_LINES) for _ in range(lines)) + "\n"


def text_mail(index: int, lines: int = 20) -> bytes:
    """A plain Japanese mail, ISO-2022-JP body and RFC 2047 ISO-2022-JP subject."""
    msg = MIMEText(ja_text(lines, index), "plain", "iso-2022-jp")
    msg["Subject"] = Header(
        f"会議資料の送付について（第{index}号）", "iso-2022-jp", header_name="Subject"
    ).encode()
    _envelope_headers(msg)
    return msg.as_bytes()


def attachment_mail(index: int, data: bytes, filename: str, subtype: str) -> bytes:
    msg = MIMEMultipart()
    msg["Subject"] = Header(
        f"資料送付（第{index}号）", "iso-2022-jp", header_name="Subject"
    ).encode()
    _envelope_headers(msg)
    msg.attach(MIMEText(ja_text(5, index), "plain", "iso-2022-jp"))
    part = MIMEApplication(data, subtype)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    if subtype in ("jpeg", "png"):
        part.replace_header("Content-Type", f"image/{subtype}")
    msg.attach(part)
    return msg.as_bytes()


def _envelope_headers(msg: MIMEText | MIMEMultipart) -> None:
    msg["From"] = SENDER
    msg["To"] = RCPT
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.com")


# --- PDF ---------------------------------------------------------------------------------------


def text_pdf(pages: int, lines_per_page: int = 55, seed: int = 1) -> bytes:
    """An A4 PDF with a page of Helvetica text on every page, written by hand (no deps)."""
    rnd = random.Random(seed)
    words = (
        "budget council meeting resident notice procedure municipal office schedule "
        "report review approval document department request contract estimate"
    ).split()
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in once the page object numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids: list[int] = []
    for page in range(pages):
        text = [b"BT /F1 10 Tf 12 TL 50 800 Td"]
        text.append(f"(Page {page + 1} of {pages}) Tj T*".encode())
        for _ in range(lines_per_page):
            line = " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 14)))
            text.append(f"({line}) Tj T*".encode())
        text.append(b"ET")
        stream = b"\n".join(text)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        )
        kids.append(len(objects))
    refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


# --- docx --------------------------------------------------------------------------------------

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml"
 ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"""

_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="word/document.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_ja(paragraphs: int = 12) -> bytes:
    """A one-page Word document with Japanese paragraphs, zipped by hand."""
    body = "".join(
        f"<w:p><w:r><w:t>{line}</w:t></w:r></w:p>" for line in ja_text(paragraphs, 7).splitlines()
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _RELS)
        zf.writestr("word/document.xml", document)
    return buf.getvalue()


# --- images ------------------------------------------------------------------------------------


def noise_jpeg(target_bytes: int, seed: int = 3) -> bytes:
    """A JPEG of about ``target_bytes``: noise at quality 100, 4:4:4 (≈ 3 bytes per pixel).

    As many bytes per pixel as JPEG gives, so a large attachment costs transfer, scanning and
    parsing more than decoding; the burst then stresses the mail path, not the image codec.
    """
    from PIL import Image

    rnd = random.Random(seed)
    side = max(64, int((target_bytes / 3) ** 0.5))
    for _ in range(6):  # converge on the size in a few steps
        raw = rnd.randbytes(side * side * 3)
        image = Image.frombytes("RGB", (side, side), raw)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=100, subsampling=0)
        size = buf.tell()
        if abs(size - target_bytes) < target_bytes * 0.05:
            break
        side = max(64, int(side * (target_bytes / size) ** 0.5))
    return buf.getvalue()
