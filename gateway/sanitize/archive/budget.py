"""Unpacked-bytes budgets: per archive (size and ratio) and per message (all its archives).

Both are enforced *while* decompressing, chunk by chunk, never from declared sizes.
"""

from __future__ import annotations

import threading
from typing import IO

from gateway.errors import ArchiveLimit
from gateway.sanitize.base import Context

CHUNK = 64 * 1024
# A few KiB of zipped text legitimately exceeds any ratio: the ratio applies beyond this.
RATIO_FLOOR = 1024 * 1024


class ByteBudget:
    """Unpacked bytes one message's archives may yield in all (thread-safe).

    Carried on the sanitizing ``Context`` and handed to every child context, so nested
    archives (42.zip) draw on one budget instead of multiplying it per level.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._remaining = total
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """Bytes still allowed; negative once a charge went over."""
        return self._remaining

    def charge(self, n: int) -> None:
        with self._lock:
            self._remaining -= n
            if self._remaining < 0:
                raise ArchiveLimit("unpacked size of the message's archives over the limit")


class ArchiveBudget:
    """Unpacked bytes one archive may yield: its size/ratio cap, then the message's."""

    def __init__(self, packed_size: int, ctx: Context) -> None:
        limits = ctx.limits
        by_ratio = int(max(packed_size, 1) * limits.max_ratio)
        self.cap = min(limits.max_unpacked_bytes, max(by_ratio, RATIO_FLOOR))
        self.used = 0
        self.shared = ctx.unpacked

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise ArchiveLimit(f"unpacked size over {self.cap} bytes (ratio or size limit)")
        self.shared.charge(n)


def read_bounded(stream: IO[bytes], budget: ArchiveBudget | None) -> bytes:
    buf = bytearray()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return bytes(buf)
        if budget is not None:
            budget.take(len(chunk))
        buf += chunk
