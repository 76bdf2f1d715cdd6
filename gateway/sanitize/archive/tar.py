"""tar members, read from memory (compressed tars were decoded within the budget before)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

from gateway.errors import ArchiveLimit, ConversionFailed
from gateway.sanitize.archive.budget import ArchiveBudget, read_bounded
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.base import Context


def is_tar(plain: bytes) -> bool:
    if plain[257:262] == b"ustar":
        return True
    if len(plain) < 512:
        return False
    try:  # pre-POSIX (v7) tar: only the header checksum tells
        stored = int(plain[148:156].strip(b"\x00 ") or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(plain[:148]) + 8 * 0x20 + sum(plain[156:512])


def tar_plain_entries(plain: bytes, ctx: Context, budget: ArchiveBudget) -> Iterator[Entry]:
    # Compressed tars were fully (and boundedly) decompressed before: tarfile then reads
    # from memory, so even a huge pax header cannot make it allocate beyond the input.
    try:
        tf = tarfile.open(fileobj=io.BytesIO(plain), mode="r:")
    except tarfile.TarError as exc:
        raise ConversionFailed("unreadable tar archive") from exc
    seen = 0
    with tf:
        while True:
            try:
                member = tf.next()
            except tarfile.TarError as exc:
                raise ConversionFailed("corrupt tar header") from exc
            if member is None:
                return
            seen += 1
            if seen > ctx.limits.max_archive_members * 2:
                raise ArchiveLimit("too many tar entries")
            yield _tar_entry(tf, member, budget)


def _tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo, budget: ArchiveBudget) -> Entry:
    if member.isdir():
        return Entry(member.name, "dir")
    if member.issym() or member.islnk():
        return Entry(member.name, "link")
    if not member.isfile():
        return Entry(member.name, "special")

    def read() -> bytes:
        fh = tf.extractfile(member)
        if fh is None:
            raise ConversionFailed("tar member without data")
        with fh:
            # Plain member data is a slice of what was already counted; only sparse
            # members expand (their holes), so only they draw on the budget.
            return read_bounded(fh, budget if member.issparse() else None)

    return Entry(member.name, "file", read)
