"""Smoke test of the benchmark suite: every benchmark runs in --quick mode and reports.

Nothing here asserts speed or memory (the numbers belong in docs/benchmarks.md); it only keeps
the suite from rotting: each benchmark must start its real servers, finish, and append a table
whose first row is a finite ratio.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Result, percentile, spread
from bench.run import BENCHMARKS, append
from tests.plugins.clamd import clamd_binary

REPO = Path(__file__).resolve().parents[2]
_RATIO = re.compile(r"^\| \*\*ratio: [^|]*\*\* \| \*\*([0-9.]+|nan|inf)x\*\* \|", re.M)


def run_bench(*args: str, output: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_in_quick_mode(name: str, tmp_path: Path) -> None:
    if name in ("smtp_text", "accept_latency", "burst_rss"):
        clamd_binary()  # fails with an install hint rather than a traceback from the bench
    output = tmp_path / "benchmarks.md"
    done = run_bench("--only", name, output=output)
    assert done.returncode == 0, done.stderr[-4000:]
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks")
    assert f"### {name} — " in text and "FAILED" not in text
    assert "- commit: `" in text and "- machine: nproc " in text
    ratios = _RATIO.findall(text)
    assert len(ratios) == 1
    value = float(ratios[0])
    assert math.isfinite(value) and value > 0


def test_sections_append_and_the_header_is_written_once(tmp_path: Path) -> None:
    output = tmp_path / "b.md"
    result = Result("x", "title", 2.0, "a / b")
    result.add("a", "1")
    append(output, result.markdown())
    append(output, result.markdown())
    text = output.read_text(encoding="utf-8")
    assert text.count("# Benchmarks") == 1
    assert text.count("| **ratio: a / b** | **2.00x** |") == 2


def test_statistics_helpers() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0
    assert spread([1.0, 3.0, 2.0]) == "2.00 (1.00–3.00, n=3)"
