"""rss_300: peak memory while sanitizing a 300-page PDF, vs the one-process baseline.

Each side runs in a fresh process that reports `getrusage` peaks: RUSAGE_SELF for the parent,
RUSAGE_CHILDREN for the largest (waited-for) descendant, i.e. the biggest render child. The
same sanitizer on a 30-page PDF shows whether the parent grows with the page count (it
should not hold raw bitmaps for every page).
"""

from __future__ import annotations

from pathlib import Path

from bench import procs
from bench.common import Result, median, ratio, spread
from bench.payloads import text_pdf

NAME = "rss_300"
TITLE = "peak RSS sanitizing a 300-page PDF vs one-process render"
DPI = 150


def run(work: Path, quick: bool) -> Result:
    # One repeat in full mode: peak RSS hardly varies between runs, and 300 pages take a while.
    big_pages, small_pages, repeats = (12, 4, 1) if quick else (300, 30, 1)
    big = work / f"text-{big_pages}.pdf"
    big.write_bytes(text_pdf(big_pages))
    small = work / f"text-{small_pages}.pdf"
    small.write_bytes(text_pdf(small_pages))
    parent: list[float] = []
    child: list[float] = []
    small_parent: list[float] = []
    base: list[float] = []
    seconds: list[float] = []
    for i in range(repeats):
        got = procs.ours(big, work / f"ours-{i}")
        if procs.pdf_pages(Path(got["outputs"][0])) != big_pages:
            raise RuntimeError("wrong page count in the output")
        parent.append(got["maxrss_mib"])
        child.append(got["children_maxrss_mib"])
        seconds.append(got["seconds"])
        small_parent.append(procs.ours(small, work / f"small-{i}")["maxrss_mib"])
        base.append(procs.baseline(big, work / f"base-{i}.pdf", DPI)["maxrss_mib"])
    result = Result(
        NAME, TITLE, ratio(median(parent), median(base)),
        "mugai parent peak RSS / one-process peak RSS",
    )  # fmt: skip
    result.add("mugai parent peak RSS", spread(parent, "{:.0f}") + " MiB", f"{big_pages} pages")
    result.add("mugai largest child peak RSS", spread(child, "{:.0f}") + " MiB", "render child")
    result.add("one-process baseline peak RSS", spread(base, "{:.0f}") + " MiB", "same PDF")
    growth = ratio(median(parent), median(small_parent))
    result.add(
        f"parent growth {small_pages} → {big_pages} pages", f"{growth:.2f}x",
        f"{median(small_parent):.0f} → {median(parent):.0f} MiB",
    )  # fmt: skip
    result.add("mugai seconds for the big PDF", spread(seconds, "{:.1f}") + " s")
    return result
