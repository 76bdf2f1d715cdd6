"""Progress display: a rich bar on a terminal, a plain line per second otherwise (CI logs)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, TextIO

from gateway.loadtest.report import Stats

if TYPE_CHECKING:  # rich is the replay extra: imported where a bar is drawn
    from rich.console import Console
    from rich.progress import TaskID


class ProgressSink(Protocol):
    def update(self, stats: Stats) -> None: ...
    def close(self, stats: Stats) -> None: ...


def _status(stats: Stats) -> str:
    return (
        f"{stats.accepted} accepted, {sum(stats.refused.values())} refused, "
        f"{sum(stats.errors.values())} errors, {sum(stats.skipped.values())} skipped"
    )


class NoProgress:
    def update(self, stats: Stats) -> None:
        pass

    def close(self, stats: Stats) -> None:
        pass


class PlainProgress:
    def __init__(self, out: TextIO, total: int | None, every: float = 1.0) -> None:
        self._out = out
        self._total = total
        self._every = every
        self._last = time.monotonic()

    def _line(self, stats: Stats) -> None:
        of = f"/{self._total}" if self._total else ""
        print(
            f"replay: {stats.sent}{of} sent, {_status(stats)}, {stats.msgs_per_s:.1f} msg/s",
            file=self._out,
            flush=True,
        )

    def update(self, stats: Stats) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._line(stats)

    def close(self, stats: Stats) -> None:
        self._line(stats)


class RichProgress:
    def __init__(self, console: Console, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._bar.add_task("", total=total)
        self._bar.start()

    def update(self, stats: Stats) -> None:
        done = stats.sent + sum(stats.skipped.values())
        self._bar.update(self._task, completed=done, description=_status(stats))

    def close(self, stats: Stats) -> None:
        done = stats.sent + sum(stats.skipped.values())
        # The total was an estimate (files, mbox separators): end the bar at what was done.
        self._bar.update(self._task, total=done, completed=done, description=_status(stats))
        self._bar.stop()
