"""The engine API (what the command wraps), the rich progress bar and the report maths."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

from rich.console import Console

from gateway.loadtest.progress import RichProgress
from gateway.loadtest.ratelimit import TokenBucket
from gateway.loadtest.replay import ReplayConfig, replay
from gateway.loadtest.report import Stats, percentile, render_summary, to_json
from gateway.loadtest.sources import iter_items
from tests.loadtest.mails import write_folder
from tests.plugins.smtp_sink import Sink


async def test_engine_with_rich_progress(tmp_path: Path, smtp_sink: Sink) -> None:
    write_folder(tmp_path, 6)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    stats = Stats(target=smtp_sink.address)
    progress = RichProgress(console, total=6)

    await replay(
        lambda: iter_items([tmp_path]),
        ReplayConfig("127.0.0.1", smtp_sink.port, concurrency=2, reuse=4),
        stats,
        progress,
    )
    progress.close(stats)
    render_summary(stats, console)

    assert stats.accepted == len(smtp_sink.messages) == 6 and stats.ok
    out = buf.getvalue()
    assert "6/6" in out and "━" in out  # the bar, drawn for a terminal
    assert "6 accepted" in out


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_report_of_an_empty_run_is_not_ok() -> None:
    stats = Stats(target="127.0.0.1:25")
    stats.finished = stats.started
    data = to_json(stats)
    assert data["sent"] == 0 and data["latency"]["p50"] is None
    assert not stats.ok


async def test_token_bucket_lets_every_taker_through_never_faster_than_its_rate() -> None:
    bucket = TokenBucket(rate=200.0, burst=5)
    started = time.monotonic()
    for _ in range(20):
        await bucket.take()
    elapsed = time.monotonic() - started
    # Five come at once (the burst), the other fifteen one interval apart. A busy machine can only
    # make this slower, so the lower bound is exact; no upper bound is asserted.
    assert elapsed >= 15 / 200.0 * 0.95


async def test_token_bucket_after_a_pause_allows_only_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=3)
    await bucket.take()
    await asyncio.sleep(0.2)  # idle long enough to refill far more than the burst
    started = time.monotonic()
    for _ in range(6):
        await bucket.take()
    # Three refilled tokens at once, then three more one interval (10 ms) apart.
    assert time.monotonic() - started >= 3 / 100.0 * 0.95
