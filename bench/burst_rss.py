"""burst_rss: peak RSS of `mugai serve` under a burst of mails with large attachments.

The gateway runs as `python -m gateway.cli serve`; its RSS and its descendants' (render
children, clamd is not one, LibreOffice listener is) are sampled from /proc until every mail
has reached the sink, and the kernel's VmHWM gives the exact peak of the gateway process.
Baseline: the same process idle after a warm-up mail, in the same run. A second row compares
the intake rate (MiB/s until every 250) with a bare aiosmtpd forwarder on the first mails.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

from bench import servers
from bench.client import blast
from bench.common import Result, RssSampler, hwm_mib, median, ratio, rss_mib
from bench.payloads import attachment_mail, noise_jpeg

NAME = "burst_rss"
TITLE = "peak RSS of the gateway under a burst of large attachments vs idle"
CONCURRENCY = 8
FORWARDER_MAILS = 20
_MSGID = re.compile(rb"Message-ID: <[^>]*>")


async def _sample(sampler: RssSampler, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.to_thread(sampler.sample)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _run(work: Path, clamd: str, mails: int, size: int) -> Result:
    sink = await servers.start_sink()
    gateway = await servers.start_gateway(work / "gateway", sink.address, clamd)
    template = attachment_mail(0, noise_jpeg(size), "現場写真.jpg", "jpeg")

    def make(index: int) -> bytes:  # unique Message-ID, shared (already encoded) body
        return _MSGID.sub(f"Message-ID: <burst-{index}@example.com>".encode(), template, 1)

    async with servers.running(gateway, sink):
        # Intake baseline: the same mails into a bare aiosmtpd forwarder (aiosmtpd reads DATA
        # line by line, which bounds any aiosmtpd-based server's MB/s on large mails).
        forwarder = await servers.start_forwarder(sink.address)
        async with servers.running(forwarder):
            base_n = min(mails, FORWARDER_MAILS)
            base = await blast(forwarder.port, make, CONCURRENCY, count=base_n)
            await sink.wait_for(base_n, 60 + base_n * 10)
        base_mb_s = base_n * len(template) / 2**20 / (base.finished - base.started)
        offset = len(sink.arrivals)
        warm = await blast(gateway.port, make, 1, count=1)
        if warm.failures:
            raise RuntimeError("warm-up mail refused")
        await sink.wait_for(offset + 1, 300)
        idle = []
        for _ in range(10):
            idle.append(rss_mib(gateway.pid))
            await asyncio.sleep(0.1)
        sampler = RssSampler(gateway.pid)
        stop = asyncio.Event()
        sampling = asyncio.create_task(_sample(sampler, stop))
        sent = await blast(gateway.port, make, CONCURRENCY, count=mails)
        if sent.failures:
            raise RuntimeError(f"{sent.failures} of {mails} mails refused")
        await sink.wait_for(offset + 1 + mails, 60 + mails * 10)
        stop.set()
        await sampling
        hwm = hwm_mib(gateway.pid)
        elapsed = max(sink.arrivals) - sent.started
        delivered = sink.sizes[offset + 1 :]
    idle_mib = median(idle)
    peak = max(hwm, sampler.peak_self)
    result = Result(NAME, TITLE, ratio(peak, idle_mib), "gateway peak RSS / idle RSS")
    result.add("gateway peak RSS", f"{peak:.0f} MiB", "VmHWM of the serve process")
    result.add("gateway idle RSS", f"{idle_mib:.0f} MiB", "after one warm-up mail")
    result.add("descendants peak RSS, sum", f"{sampler.peak_children_sum:.0f} MiB",
               "render children + LibreOffice listener, sampled")  # fmt: skip
    result.add(
        "largest descendant peak RSS", f"{sampler.peak_child_max:.0f} MiB",
        f"sampled; `{sampler.peak_child_name}`",
    )  # fmt: skip
    result.add("burst", f"{mails} mails × {len(template) / 2**20:.1f} MiB",
               f"{size / 2**20:.1f} MiB JPEG each, concurrency {CONCURRENCY}")  # fmt: skip
    accept_s = sent.finished - sent.started
    mb_s = mails * len(template) / 2**20 / accept_s
    result.add("all accepted after", f"{accept_s:.1f} s", f"{mb_s:.1f} MiB/s intake")
    result.add(
        "bare forwarder intake", f"{base_mb_s:.1f} MiB/s",
        f"same mails ({base_n}), same client; gateway/forwarder {mb_s / base_mb_s:.2f}x",
    )  # fmt: skip
    result.add("all delivered after", f"{elapsed:.1f} s", f"{mails / elapsed:.2f} msgs/s")
    result.add("delivered size", f"{median([float(s) for s in delivered]) / 2**20:.2f} MiB",
               "median per mail")  # fmt: skip
    result.add("RSS samples", str(sampler.samples), "every 0.1 s")
    return result


def run(work: Path, quick: bool) -> Result:
    mails, size = (10, 1_000_000) if quick else (200, 5_000_000)
    with servers.clamd(work) as clamd:
        return asyncio.run(_run(work, clamd, mails, size))
