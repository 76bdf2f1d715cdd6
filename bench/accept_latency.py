"""accept_latency: SMTP accept latency (end of DATA → 250) with converters saturated vs idle.

The same gateway, the same small Japanese text mails sent one after another; in the loaded
phase two more clients keep sending mails with multi-page PDF attachments (at most a few
undelivered at a time, so the spool stays short and the converters stay busy). The 250 must
not wait for sanitizing: only for the spool write and its fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from bench import servers
from bench.client import accept_latency, send_timed
from bench.common import Result, count_matching, latency_cell, percentile, ratio
from bench.payloads import attachment_mail, text_mail, text_pdf
from bench.servers import Proc, Sink

NAME = "accept_latency"
TITLE = "SMTP accept latency p99: converters saturated vs idle"
LOADERS = 2
MAX_UNDELIVERED = 6
RENDER_CHILD = "gateway.sanitize.render_child"


class _Load:
    def __init__(self, gateway: Proc, sink: Sink, mail: bytes) -> None:
        self.gateway, self.sink, self.mail = gateway, sink, mail
        self.sent = 0  # every mail sent to the gateway, small ones included
        self.stop = asyncio.Event()
        self.busy: list[int] = []  # render processes alive, sampled

    async def loader(self) -> None:
        while not self.stop.is_set():
            if self.sent - len(self.sink.arrivals) >= MAX_UNDELIVERED:
                await asyncio.sleep(0.05)
                continue
            self.sent += 1
            await send_timed(self.gateway.port, self.mail)

    async def sampler(self) -> None:
        while not self.stop.is_set():
            self.busy.append(count_matching(self.gateway.pid, RENDER_CHILD))
            await asyncio.sleep(0.2)

    async def wait_busy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while count_matching(self.gateway.pid, RENDER_CHILD) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the converters never got busy")
            await asyncio.sleep(0.05)


async def _measure(port: int, samples: int, load: _Load) -> list[float]:
    lats = []
    for i in range(samples):
        load.sent += 1
        lats.append(await accept_latency(port, text_mail(i)))
        await asyncio.sleep(0.01)  # a stream of mails, not a tight loop
    return lats


async def _run(work: Path, clamd: str, samples: int, rounds: int, pages: int) -> Result:
    sink = await servers.start_sink()
    gateway = await servers.start_gateway(work / "gateway", sink.address, clamd)
    pdf_mail = attachment_mail(0, text_pdf(pages), "資料.pdf", "pdf")
    idle: list[float] = []
    loaded: list[float] = []
    busy: list[int] = []
    async with servers.running(gateway, sink):
        load = _Load(gateway, sink, pdf_mail)
        # Warm-up: clamd session, imports, the sanitizers' first use.
        load.sent += 2
        await send_timed(gateway.port, text_mail(99_999))
        await send_timed(gateway.port, pdf_mail)
        await sink.wait_for(load.sent, 300)
        for _ in range(rounds):
            idle += await _measure(gateway.port, samples, load)
            await sink.wait_for(load.sent, 300)
            load.stop.clear()
            tasks = [asyncio.create_task(load.loader()) for _ in range(LOADERS)]
            await load.wait_busy()
            tasks.append(asyncio.create_task(load.sampler()))
            loaded += await _measure(gateway.port, samples, load)
            load.stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sink.wait_for(load.sent, 600)  # drain before the next idle phase
        busy = load.busy
    p99_idle, p99_loaded = percentile(idle, 99), percentile(loaded, 99)
    result = Result(NAME, TITLE, ratio(p99_loaded, p99_idle), "p99 loaded / p99 idle")
    result.add("accept latency, converters saturated", latency_cell(loaded), "p50 / p95 / p99")
    result.add("accept latency, converters idle", latency_cell(idle), "p50 / p95 / p99")
    share = sum(1 for b in busy if b > 0) / len(busy) if busy else 0.0
    result.add(
        "render processes alive while loaded", f"{share:.0%} of samples",
        f"mean {sum(busy) / max(1, len(busy)):.1f} processes",
    )  # fmt: skip
    result.add("samples per phase", f"{samples} × {rounds} rounds")
    result.add("load", f"{LOADERS} clients, {pages}-page PDF mails", f"≤ {MAX_UNDELIVERED} queued")
    return result


def run(work: Path, quick: bool) -> Result:
    samples, rounds, pages = (10, 1, 8) if quick else (150, 2, 20)
    with servers.clamd(work) as clamd:
        return asyncio.run(_run(work, clamd, samples, rounds, pages))
