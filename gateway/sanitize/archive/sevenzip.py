"""7z members. py7zr and its codecs (lzma, bzip2, zstd, brotli, PPMd, BCJ: C code) parse
the archive in the jail (``unpack_child``); this side believes no name, kind or size
without a bound."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.errors import ArchiveLimit, ConversionFailed
from gateway.sanitize.archive.budget import ArchiveBudget
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.archive.records import RECORD_LINE_MAX, parse_records
from gateway.sanitize.base import Context

_UNPACK_CHILD = "gateway.sanitize.unpack_child"


def sevenzip_entries(data: bytes, ctx: Context, budget: ArchiveBudget) -> Iterator[Entry]:
    from gateway.sanitize import sandbox

    max_entries = ctx.limits.max_archive_members * 2
    # The child's own cap is what this side may still take; it is re-checked record by record.
    cap = min(budget.cap - budget.used, max(ctx.unpacked.remaining, 0))
    result = sandbox.run(
        [*sandbox.python_child(_UNPACK_CHILD), "7z", str(max_entries), str(max(cap, 0))],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(ctx.limits.min_seconds, 1.0),
            memory_mb=ctx.limits.memory_mb,
            max_processes=16,
            max_output_bytes=max(cap, 0) + (max_entries + 2) * RECORD_LINE_MAX,
        ),
        network=ctx.limits.network_isolation,
    )
    if result.killed == "output_too_large":
        raise ArchiveLimit("7z unpacked size over the limit")
    if result.killed is not None:
        raise ConversionFailed(f"7z unpacking stopped ({result.killed})")
    entries = parse_sevenzip_records(result.stdout, max_entries, budget)
    if result.returncode != 0:
        raise ConversionFailed(f"7z unpacker exited with {result.returncode}")
    yield from entries


def parse_sevenzip_records(out: bytes, max_entries: int, budget: ArchiveBudget) -> list[Entry]:
    return parse_records(out, max_entries, budget.take, what="7z")
