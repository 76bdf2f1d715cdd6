"""TNEF (winmail.dat): Outlook's wrapper around attachments and a rich body.

tnefparse does the decoding; we bound its input (object count pre-scan) and turn
anything it raises into ``ConversionFailed``. Each attachment, and the RTF/HTML (or
plain) body, goes back through the registry via ``ctx.recurse`` like an archive member.
"""

from __future__ import annotations

import dataclasses
import logging
import struct

from gateway.errors import ArchiveLimit, ConversionFailed, InternalError, PartRefused
from gateway.model import Action, CleanFile, Detected, PartReport, SanitizeResult
from gateway.sanitize.archive import recurse_member, unique_name
from gateway.sanitize.base import Context

log = logging.getLogger(__name__)

TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
# tnefparse slices the remaining input per object: bound the number of objects so the
# copying stays linear-ish in practice.
MAX_OBJECTS = 5_000


def sanitize_tnef(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    """Sanitize the attachments and body of a TNEF blob, each as its own member."""
    if ctx.recurse is None:
        raise InternalError("TNEF sanitizer called without a member dispatcher")
    if ctx.depth >= ctx.limits.max_depth:
        raise ArchiveLimit(f"TNEF nested deeper than {ctx.limits.max_depth}")
    members = _members(data, ctx)
    files: list[CleanFile] = []
    reports: list[PartReport] = []
    used: set[str] = set()
    for n, (name, content) in enumerate(members, start=1):
        report, outs = recurse_member(content, name, ctx, str(n))
        unique = tuple(dataclasses.replace(f, filename=unique_name(f.filename, used)) for f in outs)
        files.extend(unique)
        reports.append(dataclasses.replace(report, outputs=tuple(f.filename for f in unique)))
    action = Action.CONVERTED if files else Action.REMOVED
    reasons: tuple[str, ...] = ()
    if not files:
        reasons = tuple(dict.fromkeys(r for rep in reports for r in rep.reasons)) or ("empty_tnef",)
    return SanitizeResult(
        files=tuple(files), action=action, reasons=reasons, children=tuple(reports)
    )


def _members(data: bytes, ctx: Context) -> list[tuple[str, bytes]]:
    if not data.startswith(TNEF_SIGNATURE):
        raise ConversionFailed("not a TNEF stream")
    count = _count_objects(data)
    if count > MAX_OBJECTS:
        raise ArchiveLimit(f"TNEF with {count} objects")
    try:
        import tnefparse

        logging.getLogger("tnefparse").setLevel(logging.ERROR)
        tnef = tnefparse.TNEF(data, do_checksum=False)
        members: list[tuple[str, bytes]] = []
        for i, att in enumerate(tnef.attachments, start=1):
            content = att.data if isinstance(att.data, bytes) else b""
            members.append((_attachment_name(att, i), content))
        members.extend(_bodies(tnef))
    except PartRefused:
        raise
    except Exception as exc:  # tnefparse raises all sorts on malformed input
        raise ConversionFailed(f"unreadable TNEF ({type(exc).__name__})") from exc
    if len(members) > ctx.limits.max_archive_members:
        raise ArchiveLimit(f"TNEF with {len(members)} attachments")
    total = sum(len(c) for _, c in members)
    if total > ctx.limits.max_unpacked_bytes:
        raise ArchiveLimit("TNEF contents over the unpacked size limit")
    return members


def _count_objects(data: bytes) -> int:
    """Walk the top-level object headers (level, id, type, length) without decoding."""
    offset, count = 6, 0
    while offset + 9 <= len(data) and count <= MAX_OBJECTS:
        (length,) = struct.unpack_from("<I", data, offset + 5)
        offset += 9 + length + 2
        count += 1
    return count


def _attachment_name(att: object, i: int) -> str:
    try:
        name = att.long_filename()  # type: ignore[attr-defined]
    except Exception:
        name = None
    if isinstance(name, bytes):
        name = _decode(name, getattr(att, "codepage", None))
    if not isinstance(name, str) or not name.strip("\x00 "):
        raw = getattr(att, "_name", b"")
        name = _decode(raw, getattr(att, "codepage", None)) if isinstance(raw, bytes) else raw
    name = str(name or "").strip("\x00 ")
    return name or f"attachment{i}.dat"


def _decode(raw: bytes, codepage: object) -> str:
    for codec in (str(codepage) if codepage else "cp1252", "utf-8", "cp932"):
        try:
            return raw.decode(codec).strip("\x00")
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1").strip("\x00")


def _bodies(tnef: object) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    try:  # compressed RTF is decoded lazily and may be garbage: keep the attachments then
        rtf = tnef.rtfbody if getattr(tnef, "_rtfbody", None) else None  # type: ignore[attr-defined]
    except Exception:
        rtf = None
    if isinstance(rtf, bytes) and rtf.lstrip().startswith(b"{\\rt"):
        out.append(("body.rtf", rtf))  # only when it really decompressed to RTF
    html = getattr(tnef, "htmlbody", None)
    if html:
        out.append(("body.html", html.encode("utf-8") if isinstance(html, str) else html))
    if not out:
        body = getattr(tnef, "body", None)
        if body:
            out.append(("body.txt", body.encode("utf-8") if isinstance(body, str) else body))
    return out
