"""Content detection: kinds, flags (encrypted, macros, polyglot, type_mismatch), robustness."""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.mime.detect import KINDS, detect

# --- tiny generated samples ---------------------------------------------------------------


def png(extra: bytes = b"") -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
        + extra
    )


def jpeg(extra: bytes = b"") -> bytes:
    # SOI, APP0, SOS (no real image: detection only walks markers), entropy data, EOI
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sos = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sos + b"\x12\x34\xff\x00\x56" + b"\xff\xd9" + extra


def pdf(encrypt: bool = False, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    trailer = b"<< /Root 1 0 R /Size 3" + (b" /Encrypt 2 0 R" if encrypt else b"") + b" >>"
    body = (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
        + (b"2 0 obj\n<< /Filter /Standard /V 1 /EncryptMetadata false >>\nendobj\n")
        + b"xref\n0 1\n0000000000 65535 f \ntrailer\n"
        + trailer
        + b"\nstartxref\n0\n%%EOF\n"
    )
    return prefix + body + suffix


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


CT = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'


def ooxml(main: str, vba: bool = False, content_types: bytes = CT) -> bytes:
    members = {"[Content_Types].xml": content_types, "_rels/.rels": b"<r/>", main: b"<x/>"}
    if vba:
        members[main.split("/")[0] + "/vbaProject.bin"] = b"\xd0\xcf\x11\xe0"
    return zip_of(members)


EML = (
    b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0900\r\n"
    b"From: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <a@example.jp>\r\n"
    b"To: b@example.lg.jp\r\nSubject: test\r\n"
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\nbody\r\n"
)


# --- kinds --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "name", "kind"),
    [
        (png(), "a.png", "png"),
        (jpeg(), "a.jpg", "jpeg"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "a.gif", "gif"),
        (pdf(), "a.pdf", "pdf"),
        (b"{\\rtf1\\ansi hello}", "a.rtf", "rtf"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "a", "executable"),
        (b"MZ\n", "test.exe", "executable"),
        (b"#!/bin/sh\nrm -rf /\n", "run", "script"),
        (b'WScript.Echo "hi"\r\n', "a.vbs", "script"),
        (b"[InternetShortcut]\r\nURL=http://evil.example/\r\n", "a.url", "shortcut"),
        (
            bytes.fromhex("4C0000000114020000000000C000000000000046") + bytes(60),
            "a.lnk",
            "shortcut",
        ),
        (bytes.fromhex("E4525C7B8CD8A74DAEB15378D02996D3") + bytes(200), "a.one", "onenote"),
        (b"\x78\x9f\x3e\x22\x01\x00" + bytes(20), "winmail.dat", "tnef"),
        (EML, "fwd.eml", "eml"),
        (b"Content-Type: message/rfc822\n\nContent-Type: text/plain\n\nhi\n", "x.eml", "eml"),
        (b"<html><body><p>hi</p></body></html>", "a.html", "html"),
        (b'<?xml version="1.0"?><root><a/></root>', "a.xml", "xml"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "svg"),
        ("日本語のテキスト\r\n".encode("cp932") * 20, "a.txt", "text"),
        (b"a,b,c\n1,2,3\n", "a.csv", "csv"),
        (b"hello world\n", "a.txt", "text"),
        (bytes(32768) + b"\x01CD001\x01" + bytes(100), "a.iso", "disk_image"),
        (b"\x00\x01\x02\x03garbage\xff\xfe" * 10, "a.bin", "unknown"),
        (b"", "empty.txt", "unknown"),
        (ooxml("word/document.xml"), "a.docx", "docx"),
        (ooxml("xl/workbook.xml"), "a.xlsx", "xlsx"),
        (ooxml("ppt/presentation.xml"), "a.pptx", "pptx"),
        (zip_of({"mimetype": b"application/vnd.oasis.opendocument.text"}), "a.odt", "odt"),
        (zip_of({"a.txt": b"x"}), "a.zip", "zip"),
        (zip_of({"AndroidManifest.xml": b"x", "classes.dex": b"y"}), "a.apk", "executable"),
    ],
)
def test_kinds(data: bytes, name: str, kind: str) -> None:
    d = detect(data, name)
    assert d.kind == kind, d
    assert d.kind in KINDS


def test_csv_by_declared_type() -> None:
    assert detect(b"a,b\n1,2\n", "data", "text/csv").kind == "csv"
    assert detect(b"a,b\n1,2\n", "data.txt", "text/plain").kind == "text"


# --- macros -------------------------------------------------------------------------------
def test_ooxml_with_vba_is_macro_enabled_whatever_the_name() -> None:
    d = detect(ooxml("word/document.xml", vba=True), "invoice.docx")
    assert d.kind == "docm" and "macros" in d.flags
    d = detect(ooxml("xl/workbook.xml", vba=True), "a.xlsx")  # libmagic calls it xlsx
    assert d.kind == "xlsm" and "macros" in d.flags


def test_xlm_macrosheet_in_ooxml() -> None:
    data = zip_of({"[Content_Types].xml": CT, "xl/workbook.xml": b"<w/>",
                   "xl/macrosheets/sheet1.xml": b"<m/>"})  # fmt: skip
    assert "macros" in detect(data, "a.xlsx").flags


def test_macro_enabled_content_type_without_vba() -> None:
    ct = CT.replace(b"/>", b"><Override ContentType='application/vnd.ms-word.document."
                    b"macroEnabled.main+xml'/></Types>")  # fmt: skip
    d = detect(ooxml("word/document.xml", content_types=ct), "a.docm")
    assert d.kind == "docm" and "macros" not in d.flags


def test_odf_basic_macros() -> None:
    data = zip_of({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                   "Basic/Standard/Module1.xml": b"<m/>"})  # fmt: skip
    d = detect(data, "a.ods")
    assert d.kind == "ods" and "macros" in d.flags


# --- encryption ---------------------------------------------------------------------------
def test_encrypted_pdf() -> None:
    assert "encrypted" in detect(pdf(encrypt=True), "a.pdf").flags
    assert "encrypted" not in detect(pdf(), "a.pdf").flags


def test_encrypted_zip_entry() -> None:
    data = bytearray(zip_of({"a.txt": b"x"}))
    struct.pack_into("<H", data, data.find(b"PK\x01\x02") + 8, 1)
    struct.pack_into("<H", data, 6, 1)
    assert "encrypted" in detect(bytes(data), "a.zip").flags


# --- polyglots ----------------------------------------------------------------------------
def test_polyglots() -> None:
    appended_zip = zip_of({"payload.js": b"evil()"})
    assert "polyglot" in detect(png(appended_zip), "a.png").flags
    assert "polyglot" in detect(jpeg(appended_zip), "a.jpg").flags
    assert "polyglot" in detect(jpeg(b"X" * 4096), "a.jpg").flags  # data after EOI
    assert "polyglot" in detect(pdf(suffix=appended_zip), "a.pdf").flags
    assert "polyglot" in detect(pdf(prefix=b"GIF89a junk\n"), "a.pdf").flags
    assert "polyglot" in detect(pdf(suffix=b"A" * 500), "a.pdf").flags  # after %%EOF
    for clean in (png(), jpeg(), pdf(), pdf(suffix=b"\r\n\x00\x00")):
        assert "polyglot" not in detect(clean, "x").flags
    assert "polyglot" in detect(zip_of({"a": b"b"}) + b"<script>x</script>" * 5, "a.zip").flags


# --- type mismatch ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "name", "declared", "mismatch"),
    [
        (pdf(), "invoice.exe", "", True),
        (b"MZ\x90\x00" + bytes(200), "invoice.pdf", "", True),
        (b"MZ\x90\x00" + bytes(200), "readme.txt", "", True),
        (pdf(), "a.pdf", "image/png", True),
        (png(), "photo.jpg", "", False),  # images among themselves
        (ooxml("xl/workbook.xml"), "old.xls", "application/vnd.ms-excel", False),
        (pdf(), "a.bin", "application/octet-stream", False),
        (pdf(), "a.pdf", "", False),
        (pdf(), "noext", "", False),
        (b"<html>hi</html>", "page.txt", "", False),  # text-ish families mix
        (EML, "forward.txt", "text/plain", False),
        (b"hello", "a.txt", "application/pdf", True),
        (zip_of({"a": b"b"}), "a.docx", "", True),
        (png(), "a.png", "", False),
        (b"hello", "testRTL\u202eexe.txt", "", True),  # displays as "testRTLtxt.exe"
        (b"hello", "\u202efdp.txt", "", True),  # displays as "txt.pdf"
    ],
)
def test_type_mismatch(data: bytes, name: str, declared: str, mismatch: bool) -> None:
    assert ("type_mismatch" in detect(data, name, declared).flags) is mismatch


# --- robustness ---------------------------------------------------------------------------
def test_garbage_never_raises() -> None:
    rng = random.Random(1234)
    prefixes = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"%PDF-",
                b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x78\x9f\x3e\x22", b"7z\xbc\xaf\x27\x1c",
                b"{\\rtf", b"From: x\n"]  # fmt: skip
    for i in range(300):
        data = rng.choice(prefixes) + rng.randbytes(rng.randint(0, 3000))
        d = detect(data, rng.choice(["a.pdf", "b.exe", "", "c.docx", "\u202e.txt"]), "x/y")
        assert d.kind in KINDS, i


def test_truncated_zip_and_ole_are_handled() -> None:
    data = zip_of({f"f{i}": os.urandom(100) for i in range(20)})
    for cut in (10, 100, len(data) // 2, len(data) - 10):
        assert detect(data[:cut], "a.zip").kind in KINDS
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    assert detect(ole, "a.doc").kind in ("doc", "unknown")


def test_thread_safety(corpus: Path) -> None:
    files = [p for p in sorted((corpus / "documents").rglob("*")) if p.is_file()][:60]
    blobs = [(p.read_bytes(), p.name) for p in files]
    expected = [detect(b, n) for b, n in blobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda bn: detect(*bn), blobs * 3))
    assert got == expected * 3


# --- corpus -------------------------------------------------------------------------------
EXPECTED = {
    # path: (kind, flags that must be present)
    "documents/dangerzone/sample-doc.doc": ("doc", set()),
    "documents/dangerzone/sample-docm.docm": ("docm", set()),
    "documents/dangerzone/sample-xlsx.xlsx": ("xlsx", set()),
    "documents/dangerzone/sample-ppt.ppt": ("ppt", set()),
    "documents/dangerzone/sample-odt.odt": ("odt", set()),
    "documents/dangerzone/sample-ods.ods": ("ods", set()),
    "documents/dangerzone/sample-svg.svg": ("svg", set()),
    "documents/pycirclean/rich_text.rtf": ("rtf", set()),
    "documents/pycirclean/rar_archive.rar": ("rar", set()),
    "documents/pycirclean/zip_archive.zip": ("zip", set()),
    "documents/images/cpython/python.webp": ("webp", set()),
    "documents/images/cpython/python.bmp": ("bmp", set()),
    "documents/mikel-mail-attachments/test.tiff": ("tiff", set()),
    "documents/text-ja/aozora-kojiki/03gendaigoyaku_kojiki.txt.sjis": ("text", set()),
    "documents/text-ja/aozora-kojiki/03gendaigoyaku_kojiki.txt.eucjp": ("text", set()),
    "documents/text-ja/aozora-kojiki/03gendaigoyaku_kojiki.txt.utf16": ("text", set()),
    "documents/tnef/mimekit/winmail.tnef": ("tnef", set()),
    "adversarial/office/oletools/olevba__sample_with_vba.ppt": ("ppt", {"macros"}),
    "adversarial/office/oletools/excel4-macros__excel4_sample_macro.xlt": ("xls", {"macros"}),
    "adversarial/office/oletools/excel4-macros__excel4_sample_macro.xltm": ("xlsm", {"macros"}),
    "adversarial/office/oletools/encrypted__autostart-encrypt-standardpassword.xls": (
        "xls",
        {"macros", "encrypted"},
    ),
    "adversarial/office/oletools/oleobj__embedded-simple-2007.dot": ("dot", set()),
    "adversarial/office/oletools/basic__encrypted.docx": ("docx", {"encrypted"}),
    "adversarial/office/oletools/encrypted__encrypted.doc": ("doc", {"encrypted"}),
    "adversarial/office/oletools/encrypted__encrypted.xls": ("xls", {"encrypted"}),
    "adversarial/office/oletools/encrypted__encrypted.pptx": ("pptx", {"encrypted"}),
    "adversarial/office/oletools/encrypted__encrypted.xlsx": ("xlsx", {"encrypted"}),
    "adversarial/office/oletools/msodde__dde-test.docx": ("docx", set()),
    "adversarial/office/oletools/msodde__dde-in-csv.csv": ("csv", set()),
    "adversarial/office/oletools/rtfobj__issue_185.rtf.zip": ("zip", {"encrypted"}),
    "adversarial/archives/corkami-zip/zipcrypto.zip": ("zip", {"encrypted"}),
    "adversarial/archives/corkami-zip/aes.zip": ("zip", {"encrypted"}),
    "adversarial/archives/deco-mail-filter/test-1-encrypted.zip": ("zip", {"encrypted"}),
    "adversarial/archives/libarchive/zip_encryption_header.zip": ("zip", {"encrypted"}),
    "adversarial/archives/libarchive/zip_filename_cp932.zip": ("zip", set()),
    "adversarial/archives/corkami-zgip/eicar.zip.gz": ("gzip", {"polyglot"}),
    "adversarial/formats/corkami-mini/7-Zip.7z": ("7z", set()),
    "adversarial/formats/corkami-mini/tar.tar": ("tar", set()),
    "adversarial/formats/corkami-mini/xz.xz": ("xz", set()),
    "adversarial/formats/corkami-mini/bzip2.bz2": ("bzip2", set()),
    "adversarial/formats/corkami-mini/rar5.rar": ("rar", set()),
    "adversarial/formats/corkami-mini/js.htm": ("html", set()),
    "adversarial/pdf/pdfjs/PDFBOX-4352-0.pdf": ("pdf", {"encrypted"}),
    "adversarial/pdf/pdfjs/saslprep-r6.pdf": ("pdf", {"encrypted"}),
    "adversarial/pdf/pdfjs/encrypted-attachment.pdf": ("pdf", {"encrypted"}),
    "adversarial/pdf/corkami/pos0-Sig.pdf": ("pdf", {"polyglot"}),
    "adversarial/pdf/corkami/1016garbage.pdf": ("pdf", {"polyglot"}),
    "adversarial/pdf/corkami/text-firefox-tiny.pdf": ("pdf", set()),  # no %PDF header
    "adversarial/polyglots/corkami/Apple2PDF__AppleII.pdf": ("pdf", {"polyglot"}),
    "adversarial/polyglots/corkami/mp3jpg__pVG.jpg": ("jpeg", {"polyglot"}),
    "adversarial/pycirclean/autorun.inf": ("script", set()),
    "adversarial/pycirclean/testRTL\u202eexe.txt": ("text", {"type_mismatch"}),
    "adversarial/mail/flanker/enclosed-endless.eml": ("eml", set()),
    "adversarial/mail/stalwart-malformed/010.eml": ("eml", set()),
    "adversarial/mail/mimedefang/zip.eml": ("eml", set()),
}
NOT_FLAGGED = {
    "documents/office/oletools-clean/harmless-clean.docm": "macros",
    "documents/pdf/pdfjs/basicapi.pdf": "encrypted",
    "documents/images/pillow/hopper.jpg": "polyglot",
    "documents/images/pillow/hopper.png": "polyglot",
    "documents/metadata/mat2/dirty.pdf": "polyglot",
    "documents/mikel-mail-attachments/test.zip": "encrypted",
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_corpus_expectations(corpus: Path, rel: str) -> None:
    kind, flags = EXPECTED[rel]
    path = corpus / rel
    d = detect(path.read_bytes(), path.name)
    assert d.kind == kind, d
    assert flags <= d.flags, d


@pytest.mark.parametrize("rel", sorted(NOT_FLAGGED))
def test_corpus_clean_files_not_flagged(corpus: Path, rel: str) -> None:
    path = corpus / rel
    assert NOT_FLAGGED[rel] not in detect(path.read_bytes(), path.name).flags


def test_every_corpus_file_gets_a_kind(corpus: Path) -> None:
    counts: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for top in ("documents", "adversarial"):
        for path in sorted((corpus / top).rglob("*")):
            if path.is_file():
                d = detect(path.read_bytes(), path.name)
                assert d.kind in KINDS, path
                counts[d.kind] += 1
                flags.update(d.flags)
    print("\nkinds:", dict(sorted(counts.items())), "\nflags:", dict(sorted(flags.items())))
    assert counts["pdf"] > 100 and counts["eml"] > 40 and counts["tnef"] == 16
    # every office document of the corpus is recognised, none left as a bare ZIP
    assert counts["unknown"] < 25
