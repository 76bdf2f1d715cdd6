"""TNEF (winmail.dat): Outlook's wrapper around attachments and a rich body.

tnefparse does the decoding, in the jail (``unpack_child tnef``); we bound its input (object
count pre-scan) and re-check every record it returns. Each attachment, and the RTF/HTML (or
plain) body, goes back through the registry via ``ctx.recurse`` like an archive member.
"""

from __future__ import annotations

import dataclasses
import logging
import struct

from gateway.errors import ArchiveLimit, ConversionFailed, InternalError
from gateway.model import Action, CleanFile, Detected, PartReport, SanitizeResult
from gateway.reasons import Reason
from gateway.sanitize import sandbox
from gateway.sanitize.archive.members import recurse_member, unique_name
from gateway.sanitize.archive.records import parse_records
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
        reasons = tuple(dict.fromkeys(r for rep in reports for r in rep.reasons)) or (
            Reason.EMPTY_TNEF,
        )
    return SanitizeResult(
        files=tuple(files), action=action, reasons=reasons, children=tuple(reports)
    )


def _members(data: bytes, ctx: Context) -> list[tuple[str, bytes]]:
    if not data.startswith(TNEF_SIGNATURE):
        raise ConversionFailed("not a TNEF stream")
    count = _count_objects(data)
    if count > MAX_OBJECTS:
        raise ArchiveLimit(f"TNEF with {count} objects")
    # tnefparse (and compressed-RTF decoding) parse attacker structure: in the jail. This
    # side re-checks every record (parse_records) and the totals below.
    limits = ctx.limits
    result = sandbox.run(
        [
            *sandbox.python_child("gateway.sanitize.unpack_child"),
            "tnef",
            str(limits.max_archive_members),
            str(limits.max_unpacked_bytes),
        ],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(limits.min_seconds, 1.0),
            memory_mb=limits.memory_mb,
            max_processes=16,
            max_output_bytes=limits.max_unpacked_bytes + (limits.max_archive_members + 2) * 8192,
        ),
        network=limits.network_isolation,
    )
    if result.killed == "output_too_large":
        raise ArchiveLimit("TNEF contents over the unpacked size limit")
    if result.killed is not None or result.returncode != 0:
        raise ConversionFailed(f"unreadable TNEF ({result.killed or result.returncode})")
    total = [0]

    def take(n: int) -> None:
        total[0] += n
        if total[0] > limits.max_unpacked_bytes:
            raise ArchiveLimit("TNEF contents over the unpacked size limit")

    try:
        entries = parse_records(
            result.stdout, limits.max_archive_members, take, what="TNEF", check_names=False
        )
    except ArchiveLimit as exc:
        raise ArchiveLimit(f"TNEF over its limits ({exc})") from exc
    members: list[tuple[str, bytes]] = []
    for entry in entries:
        if entry.kind != "file" or entry.read is None:
            raise ConversionFailed("TNEF unpacker sent a non-file member")
        members.append((entry.name, entry.read()))
    return members


def _count_objects(data: bytes) -> int:
    """Walk the top-level object headers (level, id, type, length) without decoding."""
    offset, count = 6, 0
    while offset + 9 <= len(data) and count <= MAX_OBJECTS:
        (length,) = struct.unpack_from("<I", data, offset + 5)
        offset += 9 + length + 2
        count += 1
    return count
