"""Token bucket shared by all senders: ``rate`` messages per second, bursts up to ``burst``."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._burst = max(1, burst)
        self._next = time.monotonic()  # when the next token is due
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            # Idle time refills at most `burst` tokens, so a pause is not followed by a flood.
            earliest = now - (self._burst - 1) * self._interval
            due = max(self._next, earliest)
            self._next = due + self._interval
        delay = due - now
        if delay > 0:
            await asyncio.sleep(delay)
