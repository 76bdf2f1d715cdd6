"""Counters of a replay run, the JSON report and the summary table."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is the replay extra: imported where the summary is drawn
    from rich.console import Console


@dataclass
class RelayResult:
    watch: str  # what was watched (smtp://… or a Maildir path)
    expected: int  # messages the gateway accepted, each expected at the relay
    received: int  # of those, how many arrived
    # From the start of the run to the last arrival; None while some are missing.
    relay_seconds: float | None


@dataclass
class Stats:
    target: str
    sent: int = 0  # transactions attempted = accepted + refused + errors
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by reply code
    refused_recipients: Counter[str] = field(default_factory=Counter)  # partial RCPT refusals
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    timed_out: bool = False
    interrupted: bool = False
    relay: RelayResult | None = None

    @property
    def duration(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return max(end - self.started, 1e-9)

    @property
    def msgs_per_s(self) -> float:
        return self.accepted / self.duration

    @property
    def ok(self) -> bool:
        relay_ok = self.relay is None or self.relay.received >= self.relay.expected
        return (
            self.sent > 0
            and self.accepted == self.sent
            and not self.refused_recipients
            and not self.timed_out
            and not self.interrupted
            and relay_ok
        )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that was actually measured)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def to_json(stats: Stats) -> dict[str, Any]:
    lat = stats.latencies_ms
    out: dict[str, Any] = {
        "target": stats.target,
        "sent": stats.sent,
        "accepted": stats.accepted,
        "refused": dict(sorted(stats.refused.items())),
        "refused_recipients": dict(sorted(stats.refused_recipients.items())),
        "errors": dict(sorted(stats.errors.items())),
        "skipped": sum(stats.skipped.values()),
        "skipped_reasons": dict(sorted(stats.skipped.items())),
        "duration_s": _r(stats.duration),
        "msgs_per_s": _r(stats.msgs_per_s),
        # Milliseconds from MAIL FROM to the reply to the end of DATA (connection setup excluded).
        "latency": {
            "p50": _r(percentile(lat, 50)),
            "p95": _r(percentile(lat, 95)),
            "p99": _r(percentile(lat, 99)),
            "max": _r(max(lat) if lat else None),
        },
        "timed_out": stats.timed_out,
        "interrupted": stats.interrupted,
    }
    if stats.relay is not None:
        out["relay_seconds"] = _r(stats.relay.relay_seconds)
        out["relay"] = {
            "watch": stats.relay.watch,
            "expected": stats.relay.expected,
            "received": stats.relay.received,
            "missing": max(0, stats.relay.expected - stats.relay.received),
        }
    return out


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "0"


def render_summary(stats: Stats, console: Console) -> None:
    from rich.table import Table

    data = to_json(stats)
    table = Table(title=f"mugai replay → {stats.target}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("sent", str(stats.sent))
    table.add_row("accepted", str(stats.accepted))
    table.add_row("refused (by code)", _counts(stats.refused))
    if stats.refused_recipients:
        table.add_row("refused recipients", _counts(stats.refused_recipients))
    table.add_row("errors", _counts(stats.errors))
    table.add_row("skipped", _counts(stats.skipped))
    table.add_row("duration", f"{stats.duration:.2f} s")
    table.add_row("msgs/s (accepted)", f"{stats.msgs_per_s:.1f}")
    lat = data["latency"]
    if lat["p50"] is not None:
        pcts = " / ".join(f"{lat[k]:.1f}" for k in ("p50", "p95", "p99"))
        table.add_row("latency p50/p95/p99", f"{pcts} ms")
    if stats.relay is not None:
        r = stats.relay
        secs = "—" if r.relay_seconds is None else f"{r.relay_seconds:.2f} s"
        table.add_row("at relay", f"{r.received}/{r.expected} ({r.watch})")
        table.add_row("relay_seconds", secs)
    if stats.timed_out:
        table.add_row("stopped", "--timeout reached")
    if stats.interrupted:
        table.add_row("stopped", "interrupted")
    console.print(table)
