"""The engine API (what the command wraps), the rich progress bar and the report maths."""

from __future__ import annotations

import io
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

    await replay(lambda: iter_items([tmp_path]),
                 ReplayConfig("127.0.0.1", smtp_sink.port, concurrency=2, reuse=4),
                 stats, progress)
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


async def test_token_bucket_lets_every_taker_through() -> None:
    bucket = TokenBucket(rate=1000.0, burst=5)
    for _ in range(20):
        await bucket.take()
