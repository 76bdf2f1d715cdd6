"""Unpacked-bytes budgets: per archive (size and ratio) and per message (all its archives).

Both are enforced *while* decompressing, chunk by chunk, never from declared sizes.
"""

from __future__ import annotations

import threading
import weakref
from typing import IO

from gateway.errors import ArchiveLimit
from gateway.sanitize.base import Context

CHUNK = 64 * 1024
# A few KiB of zipped text legitimately exceeds any ratio: the ratio applies beyond this.
RATIO_FLOOR = 1024 * 1024


class _Shared:
    """Unpacked bytes left for one message, shared by all its (nested) archives."""

    def __init__(self, cap: int) -> None:
        self.remaining = cap
        self.lock = threading.Lock()


_shared_by_message: dict[int, _Shared] = {}
_shared_lock = threading.Lock()


def shared_for(ctx: Context) -> _Shared:
    # The message's PageBudget object is the one thing every Context of a message
    # shares; key on it and drop the entry when it is collected.
    key = id(ctx.pages)
    with _shared_lock:
        shared = _shared_by_message.get(key)
        if shared is None:
            shared = _Shared(ctx.limits.max_unpacked_bytes)
            _shared_by_message[key] = shared
            weakref.finalize(ctx.pages, _shared_by_message.pop, key, None)
        return shared


class ArchiveBudget:
    """Unpacked bytes one archive may yield: its size/ratio cap, then the message's."""

    def __init__(self, packed_size: int, ctx: Context) -> None:
        limits = ctx.limits
        by_ratio = int(max(packed_size, 1) * limits.max_ratio)
        self.cap = min(limits.max_unpacked_bytes, max(by_ratio, RATIO_FLOOR))
        self.used = 0
        self.shared = shared_for(ctx)

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise ArchiveLimit(f"unpacked size over {self.cap} bytes (ratio or size limit)")
        with self.shared.lock:
            self.shared.remaining -= n
            if self.shared.remaining < 0:
                raise ArchiveLimit("unpacked size of the message's archives over the limit")


def read_bounded(stream: IO[bytes], budget: ArchiveBudget | None) -> bytes:
    buf = bytearray()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return bytes(buf)
        if budget is not None:
            budget.take(len(chunk))
        buf += chunk
