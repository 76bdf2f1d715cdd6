"""sanitize_startup: how long `mugai sanitize` takes for one small text file, start to exit.

Start-up dominates for one small file (interpreter, imports, settings), so this is where a
module imported but never used shows. The baseline is a bare interpreter (`python -c pass`) in
the same run; runs interleave. `--no-scan`: clamd's round trip is not start-up.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO, Result, median, ratio, spread

NAME = "sanitize_startup"
TITLE = "`mugai sanitize` on one small text file: wall and CPU ms per run"


def timed(command: list[str], cwd: Path = REPO) -> tuple[float, float]:
    """(wall ms, CPU ms user+system) of one run of ``command``; it must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(command, cwd=cwd, capture_output=True, timeout=120)
    wall = (time.monotonic() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {done.returncode}: {done.stderr[-300:]!r}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def sanitize_command(work: Path, i: int) -> list[str]:
    src = work / "note.txt"
    if not src.exists():
        src.write_text("お知らせ: small text file\n", encoding="utf-8")
    out = work / f"out{i}"
    cli = [sys.executable, "-m", "gateway.cli", "sanitize", "--no-scan"]
    return [*cli, "--out", str(out), str(src)]


def run(work: Path, quick: bool, cwd: Path = REPO) -> Result:
    n = 3 if quick else 15
    bare = [sys.executable, "-c", "pass"]
    walls: dict[str, list[float]] = {"mugai": [], "bare": []}
    cpus: dict[str, list[float]] = {"mugai": [], "bare": []}
    timed(sanitize_command(work, -1), cwd)  # compile .pyc once; not counted
    for i in range(n):
        for kind in ("mugai", "bare") if i % 2 == 0 else ("bare", "mugai"):
            command = sanitize_command(work, i) if kind == "mugai" else bare
            wall, cpu = timed(command, cwd)
            walls[kind].append(wall)
            cpus[kind].append(cpu)
    result = Result(
        NAME, TITLE, ratio(median(walls["mugai"]), median(walls["bare"])),
        "mugai sanitize / bare `python -c pass` wall ms",
    )  # fmt: skip
    result.add("mugai sanitize wall", spread(walls["mugai"], "{:.0f}") + " ms", "one text file")
    result.add("mugai sanitize CPU", spread(cpus["mugai"], "{:.0f}") + " ms", "user + system")
    result.add("bare interpreter wall", spread(walls["bare"], "{:.0f}") + " ms")
    result.add("bare interpreter CPU", spread(cpus["bare"], "{:.0f}") + " ms")
    return result
