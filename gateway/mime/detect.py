"""Content type detection: what a part *is*, whatever its name or declared type says.

libmagic gives a first opinion; our own signature checks decide the cases it misses or
gets wrong (OOXML reported as plain ZIP, xlsm reported as xlsx, headerless or junk-prefixed
PDF, mail without a leading Received line, OneNote, TNEF, ...). Every check looks at a
bounded prefix/suffix or at a ZIP central directory / OLE directory only; nothing is
decompressed beyond a few small metadata members. Garbage gives ``unknown``, never an
exception.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import threading
import unicodedata
import zipfile

import magic

from gateway.model import Detected

log = logging.getLogger(__name__)

KINDS = frozenset(
    {
        "text", "csv", "html", "xml", "svg", "pdf", "doc", "docx", "docm", "dot", "xls",
        "xlsx", "xlsm", "ppt", "pptx", "pptm", "odt", "ods", "odp", "rtf", "png", "jpeg",
        "gif", "bmp", "tiff", "webp", "zip", "tar", "gzip", "bzip2", "xz", "7z", "rar", "eml",
        "tnef", "executable", "script", "shortcut", "disk_image", "onenote", "unknown",
    }
)  # fmt: skip

KINDS = KINDS | {"msg"}  # issue 16: Outlook .msg (gateway/sanitize/msg.py)

HEAD = 256 * 1024  # what libmagic and the text heuristics see
TAIL = 64 * 1024 + 22  # a ZIP end record (with its longest comment) lies in here
PDF_HEADER_WINDOW = 1024  # Acrobat accepts %PDF anywhere in the first KiB
PDF_TRAILER_WINDOW = 1024 * 1024
MAX_ZIP_ENTRIES = 100_000  # central directories bigger than this are not inspected
MAX_META_MEMBER = 512 * 1024  # [Content_Types].xml / mimetype: read at most this much
MAX_OLE_BYTES = 64 * 1024 * 1024
TRAILING_SLACK = 16  # bytes of padding tolerated after an end marker

_tls = threading.local()


def _magic(head: bytes) -> tuple[str, str]:
    # magic.Magic instances are not thread-safe: one pair per thread.
    pair = getattr(_tls, "magic", None)
    if pair is None:
        pair = (magic.Magic(mime=True), magic.Magic())
        _tls.magic = pair
    try:
        mime = str(pair[0].from_buffer(head))
        desc = str(pair[1].from_buffer(head))
    except Exception:  # libmagic errors on some inputs; our own checks still run
        return "application/octet-stream", ""
    return mime, desc[:200]


# --- families for type_mismatch ----------------------------------------------
_KIND_FAMILY = {
    "text": "text", "csv": "text", "html": "markup", "xml": "markup", "svg": "markup",
    "pdf": "pdf", "rtf": "document",
    **{k: "document" for k in (
        "doc", "docx", "docm", "dot", "xls", "xlsx", "xlsm", "ppt", "pptx", "pptm",
        "odt", "ods", "odp")},
    **{k: "image" for k in ("png", "jpeg", "gif", "bmp", "tiff", "webp")},
    **{k: "archive" for k in ("zip", "tar", "gzip", "bzip2", "xz", "7z", "rar")},
    "eml": "mail", "tnef": "tnef",
    "executable": "executable", "script": "executable", "shortcut": "executable",
    "disk_image": "executable", "onenote": "onenote",
}  # fmt: skip

_KIND_FAMILY["msg"] = "mail"  # issue 16: an Outlook message is a mail like .eml

_EXT_FAMILY: dict[str, str] = {}
for _fam, _exts in {
    "text": "txt csv tsv log md text",
    "markup": "htm html xhtml xml svg",
    "pdf": "pdf",
    "document": "doc docx docm dot dotx dotm xls xlsx xlsm xlsb xlt xltx xltm ppt pptx pptm "
    "pps ppsx ppsm pot potx potm odt ods odp ott ots otp rtf",
    "image": "png jpg jpeg jpe jfif gif bmp dib tif tiff webp",
    "archive": "zip tar gz tgz bz2 tbz tbz2 xz txz 7z rar lzh lha",
    "mail": "eml",
    "executable": "exe dll com scr msi msp sys cpl ocx pif bat cmd ps1 psm1 vbs vbe js jse wsf "
    "wsh hta lnk url iso img vhd vhdx jar apk sh py pl app gadget reg inf scf",
    "onenote": "one onepkg",
}.items():
    for _e in _exts.split():
        _EXT_FAMILY[_e] = _fam

_EXT_FAMILY["msg"] = "mail"  # issue 16

_MIME_FAMILY_EXACT = {
    "application/vnd.ms-outlook": "mail",  # issue 16
    "application/pdf": "pdf",
    "application/msword": "document",
    "application/rtf": "document",
    "text/rtf": "document",
    "application/zip": "archive",
    "application/x-zip-compressed": "archive",
    "application/x-zip": "archive",
    "application/x-tar": "archive",
    "application/gzip": "archive",
    "application/x-gzip": "archive",
    "application/x-gtar": "archive",
    "application/x-bzip2": "archive",
    "application/x-xz": "archive",
    "application/x-7z-compressed": "archive",
    "application/x-rar-compressed": "archive",
    "application/x-rar": "archive",
    "application/vnd.rar": "archive",
    "text/plain": "text",
    "text/csv": "text",
    "text/html": "markup",
    "text/xml": "markup",
    "application/xml": "markup",
    "application/xhtml+xml": "markup",
    "image/svg+xml": "markup",
    "message/rfc822": "mail",
    "application/ms-tnef": "tnef",
    "application/vnd.ms-tnef": "tnef",
    "application/x-msdownload": "executable",
    "application/x-msdos-program": "executable",
    "application/x-executable": "executable",
    "application/x-dosexec": "executable",
    "application/vnd.microsoft.portable-executable": "executable",
    "application/x-msi": "executable",
    "application/x-sh": "executable",
    "application/javascript": "executable",
    "text/javascript": "executable",
    "application/x-javascript": "executable",
    "application/hta": "executable",
    "application/x-ms-shortcut": "executable",
    "application/x-mswinurl": "executable",
    "application/java-archive": "executable",
    "application/x-iso9660-image": "executable",
    "application/onenote": "onenote",
    "application/msonenote": "onenote",
}

# Families that may stand for each other: HTML/XML detection is fuzzy and mail is text.
_COMPATIBLE = {frozenset({"text", "markup"}), frozenset({"text", "mail"})}

SCRIPT_EXTS = frozenset(
    "bat cmd ps1 psm1 psd1 vbs vbe js jse wsf wsh hta sh bash py pl rb php reg inf scf "
    "applescript command".split()
)
_SCRIPT_MIMES = frozenset(
    {"application/x-setupscript", "text/x-msdos-batch", "application/x-bat", "text/x-bat"}
)
_EXECUTABLE_MIMES = frozenset(
    {
        "application/x-dosexec", "application/x-executable", "application/x-sharedlib",
        "application/x-pie-executable", "application/x-mach-binary", "application/x-elf",
        "application/vnd.microsoft.portable-executable", "application/x-msi",
        "application/x-ms-installer", "application/java-archive", "application/x-java-applet",
        "application/vnd.android.package-archive", "application/x-msdownload",
        "application/x-object", "application/x-coredump",
    }
)  # fmt: skip
_DISK_MIMES = frozenset(
    {
        "application/x-iso9660-image", "application/x-virtualbox-vhd",
        "application/x-virtualbox-vhdx", "application/x-virtualbox-vmdk",
        "application/x-qemu-disk", "application/x-apple-diskimage", "application/x-raw-disk-image",
        "application/x-vhd",
    }
)  # fmt: skip
_SIMPLE_MIMES = {
    "image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/bmp": "bmp",
    "image/x-ms-bmp": "bmp", "image/tiff": "tiff", "image/webp": "webp",
    "application/pdf": "pdf", "text/rtf": "rtf", "application/rtf": "rtf",
    "application/x-tar": "tar", "application/gzip": "gzip", "application/x-gzip": "gzip",
    "application/x-bzip2": "bzip2", "application/x-xz": "xz",
    "application/x-7z-compressed": "7z", "application/x-rar": "rar",
    "application/vnd.rar": "rar", "application/x-rar-compressed": "rar",
    "message/rfc822": "eml", "message/news": "eml",
    "application/vnd.ms-tnef": "tnef", "application/ms-tnef": "tnef",
    "application/x-ms-shortcut": "shortcut", "application/x-mswinurl": "shortcut",
    "application/onenote": "onenote",
    "application/msonenote": "onenote", "image/svg+xml": "svg",
    "text/html": "html", "text/xml": "xml", "application/xml": "xml",
}  # fmt: skip

ONENOTE_GUID = bytes.fromhex("E4525C7B8CD8A74DAEB15378D02996D3")
OLE_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
LNK_MAGIC = bytes.fromhex("4C0000000114020000000000C000000000000046")
TNEF_MAGIC = b"\x78\x9f\x3e\x22"

_HEADER_RE = re.compile(rb"^[!-9;-~]{1,76}:")
_KNOWN_HEADERS = frozenset(
    b"from to cc subject date message-id received return-path mime-version content-type "
    b"delivered-to reply-to sender in-reply-to references x-mailer user-agent "
    b"content-transfer-encoding".split()
)
_STRONG_SINGLE = frozenset(
    {b"content-type", b"mime-version", b"message-id", b"received", b"return-path"}
)
_PDF_ENCRYPT_RE = re.compile(rb"/Encrypt\s*(?:\d+\s+\d+\s+R|<<)")
_PDF_BODY_RE = re.compile(rb"\d+\s+\d+\s+obj\b")
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"


def detect(data: bytes, filename: str = "", declared_type: str = "") -> Detected:
    """Detect by content; never raises (``unknown`` on garbage or internal trouble)."""
    try:
        return _detect(data, filename, declared_type)
    except Exception as exc:  # a detector bug must not crash the pipeline
        log.warning("detect failed: %s", type(exc).__name__)
        return Detected(kind="unknown", mime="application/octet-stream")


def _detect(data: bytes, filename: str, declared_type: str) -> Detected:
    head = data[:HEAD]
    mime, desc = _magic(head) if data else ("application/x-empty", "empty")
    flags: set[str] = set()
    kind = _classify(data, head, mime, desc, filename, declared_type, flags)
    if kind not in KINDS:  # defensive: the registry only knows KINDS
        kind = "unknown"
    if kind in ("text", "csv") and _wants_csv(filename, declared_type):
        kind = "csv"
    if kind != "unknown" and _mismatch(kind, filename, declared_type):
        flags.add("type_mismatch")
    return Detected(kind=kind, mime=mime, description=desc, flags=frozenset(flags))


def _classify(
    data: bytes,
    head: bytes,
    mime: str,
    desc: str,
    filename: str,
    declared: str,
    flags: set[str],
) -> str:
    if not data:
        return "unknown"
    # Strong binary signatures at offset 0 first: libmagic would say the same for
    # most, but we need the finer OOXML/OLE split and the flags.
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(data, filename, declared, flags)
    if head.startswith(OLE_MAGIC):
        return _ole_kind(data, filename, declared, flags)
    pdf_at = head.find(b"%PDF", 0, PDF_HEADER_WINDOW)
    # After junk, "%PDF-" counts behind a binary prefix (another format's header); a text
    # that merely mentions it must also have a PDF body.
    binary_prefix = pdf_at > 0 and head.startswith(b"%PDF-", pdf_at)
    binary_prefix = binary_prefix and not _looks_textual(head[:pdf_at])
    if pdf_at >= 0 and (pdf_at == 0 or binary_prefix or _pdf_plausible(data)):
        if pdf_at > 0:
            flags.add("polyglot")  # junk before %PDF: a second format may own the start
        _pdf_flags(data, flags)
        return "pdf"
    kind = _sniff(head)
    if kind is None:
        kind = _from_magic(mime, desc, head)
        if kind == "pdf" and _looks_textual(head):
            kind = "text"  # libmagic found "%PDF" in prose; the checks above said no
    if kind in (None, "text") and _pdf_plausible(data) and _looks_textual(head):
        kind = "pdf"  # headerless PDF: readers open it, so treat it as one
        _pdf_flags(data, flags)
    if kind is None:
        kind = "unknown"
    if kind in ("text", "html", "xml", "unknown") and _looks_like_mail(head):
        kind = "eml"
    if kind == "xml" and b"<svg" in head[:4096]:
        kind = "svg"
    if kind in ("text", "html", "xml", "csv") and _ext(filename) in SCRIPT_EXTS:
        kind = "script"  # Windows runs it by its extension, whatever the bytes look like
    if kind in ("text", "unknown") and head.lstrip(b"\xef\xbb\xbf").startswith(
        (b"[InternetShortcut]", b"[{000214A0", b"[Desktop Entry]", b"[Shell]")
    ):
        kind = "shortcut"
    _polyglot_flags(data, kind, flags)
    return kind


def _sniff(head: bytes) -> str | None:
    """Signatures libmagic misses or names differently."""
    if head.startswith(b"MZ") or head.startswith(b"\x7fELF"):
        return "executable"
    if head[:4] in (
        b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ):  # fmt: skip
        return "executable"  # Mach-O (and Java class: executable either way)
    if head.startswith(b"#!"):
        return "script"
    if head.startswith(LNK_MAGIC):
        return "shortcut"
    if head.startswith(ONENOTE_GUID):
        return "onenote"
    if head.startswith(TNEF_MAGIC):
        return "tnef"
    if head.startswith(b"{\\rt"):
        return "rtf"  # Word accepts "{\rt" without the "f"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith((b"conectix", b"vhdxfile", b"KDMV", b"QFI\xfb")):
        return "disk_image"
    if head[0x8001:0x8006] in (b"CD001", b"BEA01"):
        return "disk_image"  # ISO 9660 / UDF
    return None


def _from_magic(mime: str, desc: str, head: bytes) -> str | None:
    if mime in _EXECUTABLE_MIMES:
        # libmagic's DOS .COM guess fires on Shift_JIS / EUC-JP text (no magic number).
        if desc.startswith("DOS executable (COM") and _looks_textual(head):
            return "text"
        return "executable"
    if mime in _DISK_MIMES or desc.startswith("DOS/MBR boot sector"):
        return "disk_image"
    if mime in _SCRIPT_MIMES:
        return "script"
    simple = _SIMPLE_MIMES.get(mime)
    if simple is not None:
        return simple
    if mime.startswith("text/"):
        return "text"
    if mime == "application/octet-stream" and _looks_textual(head):
        return "text"
    return None


def _looks_textual(head: bytes) -> bool:
    sample = head[:8192]
    if not sample:
        return False
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    controls = sum(1 for b in sample if b < 9 or 13 < b < 27 or 27 < b < 32)
    return controls * 100 < len(sample)


def _looks_like_mail(head: bytes) -> bool:
    """An RFC 5322 header block: header lines up to the first empty line."""
    known: list[bytes] = []
    headers = bad = 0
    lines = head[:65536].splitlines()
    for i, line in enumerate(lines[:400]):
        if line in (b"", b"\r"):
            if i == 0:
                return False
            break
        if line[:1] in (b" ", b"\t"):
            continue  # folded continuation
        if i == 0 and line.startswith(b"From "):
            continue  # mbox separator
        m = _HEADER_RE.match(line)
        if m:
            headers += 1
            name = m.group(0)[:-1].lower()
            if name in _KNOWN_HEADERS:
                known.append(name)
        else:
            bad += 1
    else:
        if len(lines) > 400:
            return False  # no end of the header block in sight
    if headers == 0 or bad > max(1, headers // 10):
        return False
    return len(set(known)) >= 2 or any(k in _STRONG_SINGLE for k in known)


# --- PDF ----------------------------------------------------------------------
def _pdf_plausible(data: bytes) -> bool:
    start = data[: PDF_HEADER_WINDOW * 4]
    tail = data[-PDF_HEADER_WINDOW * 4 :]
    return bool(_PDF_BODY_RE.search(start)) and (
        b"trailer" in tail or b"startxref" in tail or b"/Root" in tail
    )


def _pdf_flags(data: bytes, flags: set[str]) -> None:
    # The trailer (or xref stream dict) of the last revision sits near the end; the
    # first-page trailer of a linearized file near the start.
    windows = (data[:PDF_TRAILER_WINDOW], data[-PDF_TRAILER_WINDOW:])
    if any(_PDF_ENCRYPT_RE.search(w) for w in windows):
        flags.add("encrypted")
    eof = data.rfind(b"%%EOF", max(0, len(data) - PDF_TRAILER_WINDOW))
    if eof >= 0 and _significant(data[eof + 5 :]):
        flags.add("polyglot")


# --- ZIP family -------------------------------------------------------------------
def _zip_kind(data: bytes, filename: str, declared: str, flags: set[str]) -> str:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception:
        # Unreadable central directory (truncated, spanned, encrypted CD): still a ZIP.
        if len(data) >= 8 and struct.unpack_from("<H", data, 6)[0] & 0x41:
            flags.add("encrypted")
        return "zip"
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            return "zip"
        names = [i.filename for i in infos]
        lower = {n.lower() for n in names}
        if any(i.flag_bits & 0x41 or i.compress_type == 99 for i in infos):
            flags.add("encrypted")
        kind = _ooxml_kind(zf, lower, flags)
        if kind is None:
            kind = _odf_kind(zf, lower, flags)
        if kind is None:
            if "androidmanifest.xml" in lower or any(n.endswith((".class", ".dex")) for n in lower):
                kind = "executable"
            else:
                kind = "zip"
    if _zip_trailing_junk(data):
        flags.add("polyglot")
    return kind


def _zip_trailing_junk(data: bytes) -> bool:
    """Data appended after the end record (and its comment): a second file rides along."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - TAIL))
    if end < 0 or len(data) < end + 22:
        return False
    comment_len = struct.unpack_from("<H", data, end + 20)[0]
    return _significant(data[end + 22 + comment_len :])


def _read_small(zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        with zf.open(name) as fh:
            return fh.read(MAX_META_MEMBER)
    except Exception:
        return b""


def _member(zf: zipfile.ZipFile, lower_name: str) -> str | None:
    for info in zf.infolist():
        if info.filename.lower() == lower_name:
            return info.filename
    return None


def _ooxml_kind(zf: zipfile.ZipFile, lower: set[str], flags: set[str]) -> str | None:
    if "[content_types].xml" not in lower:
        return None
    macros = any(
        n.endswith("vbaproject.bin") or n.endswith("vbadata.xml") or "/macrosheets/" in n
        for n in lower
    )
    ct_name = _member(zf, "[content_types].xml")
    types = _read_small(zf, ct_name).lower() if ct_name else b""
    enabled = macros or b"macroenabled" in types
    if macros:
        flags.add("macros")
    if any(n.startswith("word/") for n in lower):
        return "docm" if enabled else "docx"
    if any(n.startswith("xl/") for n in lower):
        return "xlsm" if enabled else "xlsx"
    if any(n.startswith("ppt/") for n in lower):
        return "pptm" if enabled else "pptx"
    return None  # XPS and other OPC packages: just a ZIP


_ODF_TYPES = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/vnd.oasis.opendocument.text-template": "odt",
    b"application/vnd.oasis.opendocument.spreadsheet": "ods",
    b"application/vnd.oasis.opendocument.spreadsheet-template": "ods",
    b"application/vnd.oasis.opendocument.presentation": "odp",
    b"application/vnd.oasis.opendocument.presentation-template": "odp",
}


def _odf_kind(zf: zipfile.ZipFile, lower: set[str], flags: set[str]) -> str | None:
    if "mimetype" in lower:
        mt = _read_small(zf, "mimetype").strip()
    elif "meta-inf/manifest.xml" in lower and "content.xml" in lower:
        mt = b""
    else:
        return None
    if any(n.startswith(("basic/", "scripts/")) for n in lower):
        flags.add("macros")  # StarBasic / script macros
    if mt in _ODF_TYPES:
        return _ODF_TYPES[mt]
    if mt.startswith(b"application/vnd.oasis.opendocument") or not mt:
        return "unknown"  # drawings, formulas, databases: no converter path
    return "unknown" if mt.startswith(b"application/epub") else None


# --- OLE2 (legacy Office, MSI, Outlook .msg) ---------------------------------------
# olefile, oletools and msoffcrypto parse the attacker's OLE structure in the converter jail
# (``inspect_child ole``); this side accepts only the answer shapes listed there.
_OLE_KINDS = frozenset({"doc", "dot", "xls", "ppt"})
_OLE_SECONDS = 60.0


def _ole_kind(data: bytes, filename: str, declared: str, flags: set[str]) -> str:
    if len(data) > MAX_OLE_BYTES:
        return _ext_office_kind(filename, declared) or "unknown"
    answer = _ole_inspect(data)
    verdict = answer.get("r") if answer is not None else "broken"
    if verdict == "encrypted_package":
        flags.add("encrypted")  # an encrypted OOXML document
        return _ext_office_kind(filename, declared, ooxml=True) or "docx"
    if verdict == "msi":
        return "executable"
    if verdict == "msg":
        return "msg"  # issue 16: Outlook message, sanitized by gateway/sanitize/msg.py
    if verdict == "unknown":
        return "unknown"
    if answer is None or verdict not in _OLE_KINDS:
        # A broken OLE file (or no usable answer): keep the name's office kind so the
        # converter refuses it with a reason (or isolation_unavailable) rather than us guessing.
        return _ext_office_kind(filename, declared) or "unknown"
    if answer.get("macros") is True:
        flags.add("macros")
    if answer.get("encrypted") is True:
        flags.add("encrypted")
    return str(verdict)


def _ole_inspect(data: bytes) -> dict[str, object] | None:
    """The jailed child's answer, or None when there is no well-formed one."""
    from gateway.errors import IsolationUnavailable
    from gateway.sanitize import sandbox

    try:
        result = sandbox.run(
            [*sandbox.python_child("gateway.sanitize.inspect_child"), "ole"],
            stdin=data,
            limits=sandbox.Limits(
                seconds=_OLE_SECONDS, memory_mb=1024, max_processes=16, max_output_bytes=256
            ),
        )
    except IsolationUnavailable:
        return None
    if result.returncode != 0 or result.killed is not None:
        return None
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return None
    if not isinstance(answer, dict) or not set(answer) <= {"r", "macros", "encrypted"}:
        return None
    if not isinstance(answer.get("r"), str):
        return None
    if answer["r"] in _OLE_KINDS and not (
        isinstance(answer.get("macros"), bool) and isinstance(answer.get("encrypted"), bool)
    ):
        return None
    return answer


_OFFICE_EXT_KIND = {
    "doc": "doc", "dot": "dot", "docx": "docx", "dotx": "docx", "docm": "docm",
    "dotm": "docm", "xls": "xls", "xlt": "xls", "xlsx": "xlsx", "xltx": "xlsx",
    "xlsm": "xlsm", "xltm": "xlsm", "xlsb": "xlsx", "ppt": "ppt", "pps": "ppt",
    "pot": "ppt", "pptx": "pptx", "ppsx": "pptx", "potx": "pptx", "pptm": "pptm",
    "ppsm": "pptm", "potm": "pptm",
}  # fmt: skip
_OOXML_FOR_OLE = {"doc": "docx", "dot": "docx", "xls": "xlsx", "ppt": "pptx"}


def _ext_office_kind(filename: str, declared: str, ooxml: bool = False) -> str | None:
    kind = _OFFICE_EXT_KIND.get(_ext(filename))
    if kind is None:
        d = declared.lower()
        if "wordprocessingml" in d or d == "application/msword":
            kind = "docx" if ooxml else "doc"
        elif "spreadsheetml" in d or d == "application/vnd.ms-excel":
            kind = "xlsx" if ooxml else "xls"
        elif "presentationml" in d or d == "application/vnd.ms-powerpoint":
            kind = "pptx" if ooxml else "ppt"
    if kind is not None and ooxml:
        kind = _OOXML_FOR_OLE.get(kind, kind)
    return kind


# --- polyglots ----------------------------------------------------------------
def _significant(trailing: bytes) -> bool:
    return len(trailing.strip(b"\x00\r\n\t \x1a\xff")) > TRAILING_SLACK


def _polyglot_flags(data: bytes, kind: str, flags: set[str]) -> None:
    try:
        if kind == "png":
            end = _png_end(data)
            if end is not None and _significant(data[end:]):
                flags.add("polyglot")
        elif kind == "jpeg":
            end = _jpeg_end(data)
            if end is not None and _significant(data[end:]):
                flags.add("polyglot")
        if kind not in ("zip", "docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "odt", "ods",
                        "odp", "executable", "unknown"):  # fmt: skip
            if _zip_end_in_tail(data):
                flags.add("polyglot")  # unzip finds an archive appended to it
            at = data.find(b"%PDF-", 1, PDF_HEADER_WINDOW)
            if kind != "pdf" and at > 0 and (not _looks_textual(data[:at]) or _pdf_plausible(data)):
                flags.add("polyglot")
    except Exception:
        pass


def _png_end(data: bytes) -> int | None:
    pos = 8
    for _ in range(100_000):
        if pos + 8 > len(data):
            return None
        length = int(struct.unpack_from(">I", data, pos)[0])
        ctype = data[pos + 4 : pos + 8]
        pos += 12 + length
        if ctype == b"IEND":
            return pos
    return None


def _jpeg_end(data: bytes) -> int | None:
    pos = 2
    for _ in range(10_000):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: entropy data never holds FF D9
            eoi = data.find(b"\xff\xd9", pos)
            return None if eoi < 0 else eoi + 2
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 2
            continue
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return None


def _zip_end_in_tail(data: bytes) -> bool:
    tail_start = max(0, len(data) - TAIL)
    end = data.rfind(b"PK\x05\x06", tail_start)
    while end >= 0:
        if len(data) >= end + 22:
            entries, cd_size, cd_off = struct.unpack_from("<HII", data, end + 10)
            if entries and cd_off + cd_size <= end and data[cd_off : cd_off + 4] == b"PK\x01\x02":
                return True
            if (
                entries
                and end - cd_size >= 0
                and data[end - cd_size : end - cd_size + 4] == (b"PK\x01\x02")
            ):
                return True
        end = data.rfind(b"PK\x05\x06", tail_start, end)
    return False


# --- names and declared types -------------------------------------------------------
def _ext(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c not in _BIDI).strip().rstrip(". ")
    if "." not in name:
        return ""
    return unicodedata.normalize("NFKC", name.rsplit(".", 1)[1]).lower()


def _visual_ext(filename: str) -> str:
    """The extension a reader *sees* when the name carries a right-to-left override."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if "\u202e" not in name and "\u2067" not in name:
        return ""
    out: list[str] = []
    i = 0
    while i < len(name):
        c = name[i]
        if c in "\u202e\u2067":
            j = i + 1
            while j < len(name) and name[j] not in "\u202c\u2069":
                j += 1
            out.append(name[i + 1 : j][::-1])
            i = j + 1
            continue
        out.append(c)
        i += 1
    return _ext("".join(out))


def _wants_csv(filename: str, declared: str) -> bool:
    return _ext(filename) in ("csv", "tsv") or declared.split(";")[0].strip().lower() in (
        "text/csv",
        "text/comma-separated-values",
        "text/tab-separated-values",
    )


def _declared_family(declared: str) -> str | None:
    d = declared.split(";")[0].strip().lower()
    if not d or d == "application/octet-stream":
        return None
    fam = _MIME_FAMILY_EXACT.get(d)
    if fam is not None:
        return fam
    if d.startswith("image/"):
        return "image"
    if d.startswith(
        (
            "application/vnd.openxmlformats-officedocument.",
            "application/vnd.ms-excel",
            "application/vnd.ms-word",
            "application/vnd.ms-powerpoint",
            "application/vnd.oasis.opendocument.",
        )
    ):
        return "document"
    return None


def _compatible(content: str, claimed: str) -> bool:
    return content == claimed or frozenset({content, claimed}) in _COMPATIBLE


def _mismatch(kind: str, filename: str, declared: str) -> bool:
    content = _KIND_FAMILY.get(kind)
    if content is None:
        return False
    claims = [_EXT_FAMILY.get(_ext(filename)), _EXT_FAMILY.get(_visual_ext(filename))]
    claims.append(_declared_family(declared))
    return any(c is not None and not _compatible(content, c) for c in claims)
