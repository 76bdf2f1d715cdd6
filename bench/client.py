"""SMTP clients for the benchmarks (aiosmtplib), with per-transaction timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib

from bench.payloads import RCPT, SENDER


@dataclass
class Blast:
    started: float = 0.0  # monotonic, before the first connection
    finished: float = 0.0  # monotonic, after the last 250
    latencies: list[float] = field(default_factory=list)  # whole transactions, seconds
    failures: int = 0


async def send_timed(port: int, data: bytes) -> float:
    """One transaction on a fresh connection (connect … DATA 250 … QUIT); seconds."""
    t0 = time.monotonic()
    await aiosmtplib.send(
        data, sender=SENDER, recipients=[RCPT], hostname="127.0.0.1", port=port, timeout=120
    )
    return time.monotonic() - t0


async def blast(
    port: int, mails: Sequence[bytes] | Callable[[int], bytes], concurrency: int, count: int = 0
) -> Blast:
    """Send every mail once, ``concurrency`` transactions at a time.

    ``mails`` may be a function of the index (with ``count``), so a burst of large mails is
    built one at a time instead of all up front.
    """
    result = Blast()
    make = mails if callable(mails) else mails.__getitem__
    total = count if callable(mails) else len(mails)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)

    async def worker() -> None:
        while True:
            try:
                mail = make(queue.get_nowait())
            except asyncio.QueueEmpty:
                return
            try:
                result.latencies.append(await send_timed(port, mail))
            except (aiosmtplib.SMTPException, OSError):
                result.failures += 1

    result.started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.finished = time.monotonic()
    return result


async def accept_latency(port: int, data: bytes) -> float:
    """Seconds from the end of DATA to the 250 reply (the spool write and its fsync)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(SENDER)
        await client.rcpt(RCPT)
        t0 = time.monotonic()
        await client.data(data)
        return time.monotonic() - t0
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()
