"""Archive members to sanitized files: limits on the count, each member through the
registry (``ctx.recurse``), names flattened and made unique. Never re-packed."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator

from gateway.errors import (
    ArchiveLimit,
    ConversionFailed,
    Encrypted,
    PartRefused,
    UnsafePath,
    UnsupportedType,
)
from gateway.model import Action, CleanFile, PartReport, SanitizeResult
from gateway.reasons import Reason
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.archive.names import logical_name
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

log = logging.getLogger(__name__)

UNSAFE_REASON = UnsafePath.reason


def sanitize_members(entries: Iterator[Entry], ctx: Context) -> SanitizeResult:
    files: list[CleanFile] = []
    reports: list[PartReport] = []
    used_names: set[str] = set()
    count = 0
    for entry in entries:
        if entry.kind == "dir" or _is_mac_metadata(entry.name):
            continue
        count += 1
        if count > ctx.limits.max_archive_members:
            raise ArchiveLimit(f"more than {ctx.limits.max_archive_members} members")
        index = str(count)
        logical, unsafe = logical_name(entry.name)
        if entry.kind in ("link", "special"):
            reports.append(_removed(index, entry.name, entry.kind, UnsupportedType.reason))
            continue
        if unsafe:
            reports.append(_removed(index, entry.name, "", UNSAFE_REASON))
            continue
        if entry.kind == "refused" or entry.read is None:
            reason = entry.refusal.reason if entry.refusal else ConversionFailed.reason
            reports.append(_removed(index, logical, "", reason))
            continue
        try:
            member = entry.read()
        except PartRefused as exc:
            if isinstance(exc, ArchiveLimit | Encrypted):
                raise  # the archive as a whole is over its limits / locked
            reports.append(_removed(index, logical, "", exc.reason))
            continue
        except Exception as exc:  # corrupt member data (CRC, truncated stream, ...)
            log.info("archive member %s unreadable: %s", index, type(exc).__name__)
            reports.append(_removed(index, logical, "", ConversionFailed.reason))
            continue
        report, outs = recurse_member(member, logical, ctx, index)
        renamed = tuple(_flatten(f, logical, used_names) for f in outs)
        files.extend(renamed)
        reports.append(
            dataclasses.replace(
                report, filename=logical, outputs=tuple(f.filename for f in renamed)
            )
        )
    action = Action.CONVERTED if files else Action.REMOVED
    reasons: tuple[str, ...] = ()
    if not files:
        reasons = tuple(dict.fromkeys(r for rep in reports for r in rep.reasons)) or (
            Reason.EMPTY_ARCHIVE,
        )
    return SanitizeResult(
        files=tuple(files), action=action, reasons=reasons, children=tuple(reports)
    )


def recurse_member(
    member: bytes, name: str, ctx: Context, index: str
) -> tuple[PartReport, tuple[CleanFile, ...]]:
    """Sanitize one member through the registry; the member sanitizer sees the base name."""
    assert ctx.recurse is not None
    base = name.rsplit("/", 1)[-1]
    try:
        return ctx.recurse(member, base, "", ctx.child(), index)
    except PartRefused as exc:  # the registry reports these itself; a bare recurse may not
        return (
            PartReport(
                index=index,
                filename=name,
                declared_type="",
                detected_type="",
                action=Action.REMOVED,
                reasons=(exc.reason,),
                size=len(member),
                sha256=hashlib.sha256(member).hexdigest(),
            ),
            (),
        )


def _removed(index: str, name: str, detected: str, reason: str) -> PartReport:
    return PartReport(
        index=index,
        filename=name,
        declared_type="",
        detected_type=detected,
        action=Action.REMOVED,
        reasons=(reason,),
    )


def _is_mac_metadata(name: str) -> bool:
    # macOS Finder adds AppleDouble twins (__MACOSX/._x) and .DS_Store: metadata only,
    # listing them as "removed" would just alarm the recipient.
    n = name.replace("\\", "/")
    return n.startswith("__MACOSX/") or n.rsplit("/", 1)[-1] == ".DS_Store"


def _flatten(f: CleanFile, logical: str, used: set[str]) -> CleanFile:
    """ "フォルダ/表.xlsx" sanitized to "表.pdf" becomes "フォルダ_表.pdf"; names unique."""
    dirs = logical.split("/")[:-1]
    ext = f.filename.rsplit(".", 1)[1] if "." in f.filename else ""
    name = clean_name("_".join([*dirs, f.filename]), ext) if dirs else f.filename
    return dataclasses.replace(f, filename=unique_name(name, used))


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem(2).ext``, ``stem(3).ext``, ... if taken; records the result."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{stem}({n}).{ext}" if ext else f"{stem}({n})"
        n += 1
    used.add(candidate)
    return candidate
