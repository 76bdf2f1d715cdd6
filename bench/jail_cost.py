"""jail_cost: what the converter jail costs — start-up, PDF pages/s, warm Office documents/s.

Each figure is measured twice in the same run with the same code: with the jail
(`network_isolation = "required"`, bubblewrap + seccomp) and with isolation `off` (rlimits
only). Runs interleave. The headline is PDF pages/s jailed over unjailed.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import Result, median, ratio, spread
from bench.payloads import docx_ja, text_pdf

NAME = "jail_cost"
TITLE = "converter jail on vs isolation off: start ms, PDF pages/s, warm Office docs/s"
MODES = ("required", "off")


def _start_ms(mode: str) -> float:
    from gateway.sanitize import sandbox

    t0 = time.monotonic()
    result = sandbox.run(
        ["/bin/true"],
        stdin=b"",
        limits=sandbox.Limits(seconds=30, memory_mb=256),
        network=mode,  # type: ignore[arg-type]
    )
    if result.returncode != 0:
        raise RuntimeError(f"true failed in mode {mode}: {result.stderr[-300:]!r}")
    return (time.monotonic() - t0) * 1000


def _pdf_rate(data: bytes, pages: int, mode: str) -> float:
    from gateway.sanitize import pdf
    from gateway.sanitize.base import Context, PageBudget
    from gateway.settings import SanitizeSettings

    settings = SanitizeSettings(network_isolation=mode)  # type: ignore[arg-type]
    ctx = Context(limits=settings, pages=PageBudget(settings.max_pages_per_message))
    t0 = time.monotonic()
    clean = pdf.render_pdf_to_clean_pdf(data, "bench", ctx)
    seconds = time.monotonic() - t0
    if not clean.data.startswith(b"%PDF"):
        raise RuntimeError("renderer produced no PDF")
    return pages / seconds


def run(work: Path, quick: bool) -> Result:
    from gateway.sanitize.office import OfficePool

    starts_n, pages, pdf_n, office_n = (5, 8, 1, 2) if quick else (30, 40, 4, 10)
    starts: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(starts_n):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            starts[mode].append(_start_ms(mode))
    pdf_bytes = text_pdf(pages)
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(pdf_n):
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            rates[mode].append(_pdf_rate(pdf_bytes, pages, mode))
    docx = docx_ja()
    office: dict[str, list[float]] = {m: [] for m in MODES}
    pools = {m: OfficePool(1, network=m) for m in MODES}  # type: ignore[arg-type]
    try:
        for pool in pools.values():  # start each listener; the first document is excluded
            pool.to_pdf(docx, "docx", timeout=180)
        for i in range(office_n):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                t0 = time.monotonic()
                out = pools[mode].to_pdf(docx, "docx", timeout=180)
                office[mode].append(1 / (time.monotonic() - t0))
                if not out.startswith(b"%PDF"):
                    raise RuntimeError("no PDF from the pool")
    finally:
        for pool in pools.values():
            pool.close()
    result = Result(
        NAME, TITLE, ratio(median(rates["required"]), median(rates["off"])),
        "PDF pages/s jailed / unjailed", "≥ 0.9x",
    )  # fmt: skip
    result.add("child start, jailed", spread(starts["required"], "{:.1f}") + " ms", "/bin/true")
    result.add("child start, isolation off", spread(starts["off"], "{:.1f}") + " ms", "/bin/true")
    result.add("PDF pages/s, jailed", spread(rates["required"], "{:.1f}"), f"{pages}-page text PDF")
    result.add("PDF pages/s, isolation off", spread(rates["off"], "{:.1f}"))
    result.add("warm Office docs/s, jailed", spread(office["required"], "{:.2f}"), "1 warm worker")
    result.add("warm Office docs/s, isolation off", spread(office["off"], "{:.2f}"))
    result.add(
        "warm Office ratio jailed / off",
        f"{ratio(median(office['required']), median(office['off'])):.2f}x",
    )
    return result
