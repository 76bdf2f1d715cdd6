"""pdf_pages: pages/s of the offline sanitizer on a 40-page text PDF vs one plain process.

Ours: `gateway.offline.sanitize_paths` (what `mugai sanitize` runs) in a fresh process, page
ranges rendered by sandboxed children on every core. Baseline: one process doing pypdfium2
gray render at the same dpi → PNG → img2pdf. Both are timed from input to written output,
after their imports; runs alternate.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench import procs
from bench.common import PYTHON, REPO, Result, median, ratio, spread
from bench.payloads import text_pdf

NAME = "pdf_pages"
TITLE = "offline PDF sanitizing pages/s vs one-process render → PNG → img2pdf"
DPI = 150  # the [sanitize] dpi default


def run(work: Path, quick: bool) -> Result:
    pages, repeats = (8, 1) if quick else (40, 5)
    src = work / f"text-{pages}.pdf"
    src.write_bytes(text_pdf(pages))
    rates: dict[str, list[float]] = {"ours": [], "base": []}
    sizes: dict[str, list[float]] = {"ours": [], "base": []}
    for i in range(repeats):
        steps = ["base", "ours"] if i % 2 == 0 else ["ours", "base"]
        for step in steps:
            if step == "ours":
                got = procs.ours(src, work / f"ours-{i}")
                out = Path(got["outputs"][0])
            else:
                out = work / f"base-{i}.pdf"
                got = procs.baseline(src, out, DPI)
            if procs.pdf_pages(out) != pages:
                raise RuntimeError(f"{step}: output has the wrong page count")
            rates[step].append(pages / got["seconds"])
            sizes[step].append(got["bytes"] / 1024)
    # Once through the real command, for the cost a user of the CLI sees (interpreter included).
    t0 = time.monotonic()
    subprocess.run(
        # --no-scan: this measures the sanitizers (clamd is not part of the baseline either).
        [PYTHON, "-m", "gateway.cli", "sanitize", str(src), "--out", str(work / "cli"), "--json",
         "--no-scan"],
        cwd=REPO, capture_output=True, check=True, timeout=600,
    )  # fmt: skip
    cli = time.monotonic() - t0
    result = Result(
        NAME, TITLE, ratio(median(rates["ours"]), median(rates["base"])),
        "mugai pages/s / one-process pages/s", "≥ 1.5x (both cores)",
    )  # fmt: skip
    result.add("mugai pages/s", spread(rates["ours"], "{:.1f}"), "sanitize_paths, fresh process")
    result.add("one-process pages/s", spread(rates["base"], "{:.1f}"), f"gray, {DPI} dpi")
    size_ratio = ratio(median(sizes["ours"]), median(sizes["base"]))
    result.add("output size mugai", f"{median(sizes['ours']):.0f} KiB", f"{size_ratio:.2f}x base")
    result.add("output size one-process", f"{median(sizes['base']):.0f} KiB")
    result.add("input", f"{pages} pages, {src.stat().st_size // 1024} KiB", "Helvetica text")
    result.add("`mugai sanitize` CLI wall time", f"{cli:.2f} s", "once, interpreter start incl.")
    return result
