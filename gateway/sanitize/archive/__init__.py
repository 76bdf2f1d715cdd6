"""Archives (zip, tar, gzip/bzip2/xz, 7z): unpack within limits, sanitize every member.

Each member goes back through the registry (``ctx.recurse``) and comes out as its own
rebuilt file; the archive itself is never re-packed. Limits fail closed with
``ArchiveLimit``: member count, nesting depth, total unpacked bytes and the unpacked /
packed ratio are enforced *while* decompressing, chunk by chunk, never from declared sizes
(``budget``). The unpacked-bytes cap is shared by all archives of one message (nested bombs
such as 42.zip multiply per level otherwise).

One module per concept: ``budget`` (byte budgets), ``entry`` (a member as read),
``members`` (members to sanitized files), ``names`` (legacy/CP932 names, unsafe paths),
``zip``, ``tar``, ``compressed`` (gzip/bzip2/xz), ``sevenzip``, ``records`` (the
``unpack_child`` record stream, shared with TNEF).
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.errors import ArchiveLimit, InternalError, UnsupportedType
from gateway.model import Detected, SanitizeResult
from gateway.sanitize.archive.budget import ArchiveBudget
from gateway.sanitize.archive.compressed import SINGLE_EXT, compressed_entries
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.archive.members import sanitize_members
from gateway.sanitize.archive.sevenzip import sevenzip_entries
from gateway.sanitize.archive.tar import tar_plain_entries
from gateway.sanitize.archive.zip import zip_entries
from gateway.sanitize.base import Context

__all__ = ["sanitize_archive"]


def sanitize_archive(
    data: bytes, filename: str, detected: Detected, ctx: Context
) -> SanitizeResult:
    """Unpack ``data`` (kind from ``detected``) and sanitize each member via ``ctx.recurse``."""
    if ctx.recurse is None:
        raise InternalError("archive sanitizer called without a member dispatcher")
    if ctx.depth >= ctx.limits.max_archive_depth:
        raise ArchiveLimit(f"archives nested deeper than {ctx.limits.max_archive_depth}")
    budget = ArchiveBudget(len(data), ctx)
    kind = detected.kind
    entries: Iterator[Entry]
    if kind == "zip":
        entries = zip_entries(data, ctx, budget)
    elif kind == "tar":
        entries = tar_plain_entries(data, ctx, budget)
    elif kind in SINGLE_EXT:
        entries = compressed_entries(kind, data, filename, ctx, budget)
    elif kind == "7z":
        entries = sevenzip_entries(data, ctx, budget)
    elif kind == "rar":
        raise UnsupportedType("RAR archives are not supported (ask the sender for ZIP)")
    else:
        raise UnsupportedType(f"{kind} is not an archive type this sanitizer reads")
    return sanitize_members(entries, ctx)
