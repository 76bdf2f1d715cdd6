"""Shared pieces: results, statistics, machine description, /proc memory readers."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gateway.sanitize import sandbox

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else "python3"


@dataclass
class Row:
    metric: str
    value: str
    note: str = ""


@dataclass
class Result:
    """One benchmark's outcome: the headline ratio first, then the supporting rows."""

    name: str
    title: str
    ratio: float
    ratio_label: str  # what the ratio means, e.g. "mugai / bare forwarder msgs/s"
    target: str = ""  # e.g. "≥ 1.5x"; empty when there is none
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, note: str = "") -> None:
        self.rows.append(Row(metric, value, note))

    def markdown(self) -> str:
        lines = [f"### {self.name} — {self.title}", ""]
        lines += ["| metric | value | note |", "|---|---|---|"]
        target = f"target {self.target}" if self.target else ""
        lines.append(f"| **ratio: {self.ratio_label}** | **{self.ratio:.2f}x** | {target} |")
        for row in self.rows:
            lines.append(f"| {row.metric} | {row.value} | {row.note} |")
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        lines.append("")
        return "\n".join(lines)


# --- statistics ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """'median (min–max, n=N)' for a table cell."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0]) + " (n=1)"
    lo, hi = min(values), max(values)
    return f"{fmt.format(median(values))} ({fmt.format(lo)}–{fmt.format(hi)}, n={len(values)})"


def latency_cell(values_s: list[float]) -> str:
    """p50 / p95 / p99 in milliseconds."""
    ms = [v * 1000 for v in values_s]
    return " / ".join(f"{percentile(ms, q):.1f}" for q in (50, 95, 99)) + " ms"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


# --- the machine -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def machine_line() -> str:
    return (
        f"nproc {os.cpu_count()}, CPU {cpu_model()}, RAM {ram_gib():.1f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


# --- memory from /proc ---------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def hwm_mib(pid: int) -> float:
    """Peak RSS the kernel recorded for ``pid`` (exact, unlike sampling)."""
    return _status_kib(pid, "VmHWM") / 1024


def descendants(root: int) -> list[int]:
    """All live descendants of ``root`` (the same /proc walk the sandbox uses to kill)."""
    return sandbox.descendants(root)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def short_command(pid: int) -> str:
    """The program (and module, for ``python -m``) a pid runs, without its arguments."""
    args = cmdline(pid).split()
    if not args:
        return "?"
    name = Path(args[0]).name
    if "-m" in args[:-1]:
        name += " -m " + args[args.index("-m") + 1]
    return name


def count_matching(root: int, needle: str) -> int:
    """How many descendants of ``root`` have ``needle`` in their command line."""
    return sum(1 for pid in descendants(root) if needle in cmdline(pid))


@dataclass
class RssSampler:
    """Peak RSS of one process and of its descendants, sampled from /proc."""

    pid: int
    peak_self: float = 0.0
    peak_children_sum: float = 0.0
    peak_child_max: float = 0.0
    peak_child_name: str = ""  # command of the largest descendant, for the report
    samples: int = 0

    def sample(self) -> None:
        self.samples += 1
        self.peak_self = max(self.peak_self, rss_mib(self.pid))
        # A child between fork and exec still shows the parent's command and its (shared)
        # pages: not a converter, and counting it would double the parent.
        own = cmdline(self.pid)
        sizes = {p: rss_mib(p) for p in descendants(self.pid) if cmdline(p) != own}
        if sizes:
            self.peak_children_sum = max(self.peak_children_sum, sum(sizes.values()))
            pid = max(sizes, key=sizes.__getitem__)
            if sizes[pid] > self.peak_child_max:
                self.peak_child_max = sizes[pid]
                self.peak_child_name = short_command(pid)
