"""smtp_text: Japanese text mails per second through the whole path, vs a bare forwarder.

Whole path: SMTP in → spool fsync → clamd → sanitize → relay to the sink. Baseline: a bare
aiosmtpd forwarder to the same kind of sink, same client, same N. Throughput is N divided by
the time from the first send to the last arrival at the sink.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import servers
from bench.client import Blast, blast
from bench.common import Result, latency_cell, median, ratio, spread
from bench.payloads import text_mail
from bench.servers import Proc, Sink

NAME = "smtp_text"
TITLE = "text mails/s through the whole path vs a bare forwarder"
CONCURRENCY = 8


async def _round(proc: Proc, sink: Sink, mails: list[bytes], timeout: float) -> tuple[float, Blast]:
    before = len(sink.arrivals)
    sent = await blast(proc.port, mails, CONCURRENCY)
    if sent.failures:
        raise RuntimeError(f"{sent.failures} of {len(mails)} mails refused")
    await sink.wait_for(before + len(mails), timeout)
    last = max(sink.arrivals[before : before + len(mails)])
    return len(mails) / (last - sent.started), sent


async def _run(work: Path, clamd: str, n: int, rounds: int) -> Result:
    sink = await servers.start_sink()
    forwarder = await servers.start_forwarder(sink.address)
    gateway = await servers.start_gateway(work / "gateway", sink.address, clamd)
    async with servers.running(gateway, forwarder, sink):
        warm = [text_mail(10_000 + i) for i in range(CONCURRENCY)]
        for proc in (forwarder, gateway):  # connections, imports, clamd session, caches
            await _round(proc, sink, warm, 120)
        mails = [text_mail(i) for i in range(n)]
        rates: dict[str, list[float]] = {"ours": [], "base": []}
        lats: dict[str, list[float]] = {"ours": [], "base": []}
        for r in range(rounds):
            # Alternate the order so a slow phase of the machine hits both sides alike.
            order = [("base", forwarder), ("ours", gateway)]
            for key, proc in order if r % 2 == 0 else order[::-1]:
                rate, sent = await _round(proc, sink, mails, 60 + n)
                rates[key].append(rate)
                lats[key].extend(sent.latencies)
    ours, base = median(rates["ours"]), median(rates["base"])
    result = Result(NAME, TITLE, ratio(ours, base), "mugai msgs/s / bare forwarder msgs/s")
    result.add("mugai msgs/s", spread(rates["ours"], "{:.1f}"), "median (min–max) over rounds")
    result.add("bare forwarder msgs/s", spread(rates["base"], "{:.1f}"))
    result.add("mugai SMTP transaction p50/p95/p99", latency_cell(lats["ours"]), "connect→QUIT")
    result.add("forwarder SMTP transaction p50/p95/p99", latency_cell(lats["base"]))
    result.add("mails × rounds", f"{n} × {rounds}", f"concurrency {CONCURRENCY}")
    result.add("mail size", f"{len(mails[0])} B", "ISO-2022-JP body and subject")
    result.notes.append(
        "Both servers run in their own process; client and counting sink in others. "
        "The time runs from the first connection to the last arrival at the sink."
    )
    return result


def run(work: Path, quick: bool) -> Result:
    n, rounds = (20, 1) if quick else (500, 3)
    with servers.clamd(work) as clamd:
        return asyncio.run(_run(work, clamd, n, rounds))
