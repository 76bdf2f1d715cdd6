"""qr_mask_pdf: what ``[sanitize] qr = "mask"`` costs on a PDF, against ``qr = "list"``.

Per PDF (5 pages, one QR code on page 3), the whole part path (``sanitize_part``: render in
the jail, rebuild, QR read): once with ``list`` (baseline) and once with ``mask``, which adds
the jailed re-render of the page with the code, the trusted paint/encode/page swap and the
read-again that proves no code is left. CPU ms counts this process and every child.
"""

from __future__ import annotations

import io
import os
import resource
import time
from pathlib import Path

from bench.common import Result, descendants, median, ratio, spread

NAME = "qr_mask_pdf"
TITLE = 'QR masking of a rebuilt PDF page vs listing only (qr = "mask" / "list")'


def _cpu() -> float:
    """This process, its ended children (jailed converters) and its live ones (the trusted
    encoder pool's workers never exit, so their time is read from /proc)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _pdf(i: int) -> bytes:
    import img2pdf
    import zxingcpp
    from PIL import Image, ImageDraw

    pages = []
    for p in range(5):
        img = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
        ImageDraw.Draw(img).text((100, 100), f"page {p} of document {i}", fill="black")
        if p == 2:
            code = zxingcpp.create_barcode(
                f"https://evil{i}.example/login", zxingcpp.BarcodeFormat.QRCode
            )
            img.paste(Image.fromarray(code.to_image(scale=8)).convert("RGB"), (400, 600))  # type: ignore[arg-type]
        buf = io.BytesIO()
        img.save(buf, "PNG")
        pages.append(buf.getvalue())
    out = img2pdf.convert(pages)
    assert isinstance(out, bytes)
    return out


def run(work: Path, quick: bool) -> Result:
    from gateway.sanitize.base import Context, PageBudget
    from gateway.sanitize.registry import sanitize_part
    from gateway.settings import load_settings

    n = 3 if quick else 12
    docs = [_pdf(i) for i in range(n + 1)]
    walls: dict[str, list[float]] = {"list": [], "mask": []}
    cpus: dict[str, list[float]] = {"list": [], "mask": []}
    for index, data in enumerate(docs):
        for mode in ("list", "mask"):
            cfg = load_settings(None, sanitize={"qr": mode}).sanitize
            ctx = Context(limits=cfg, pages=PageBudget(cfg.max_pages_per_message))
            c0, t0 = _cpu(), time.monotonic()
            report, _files = sanitize_part(data, "doc.pdf", "application/pdf", ctx, "1")
            t1, c1 = time.monotonic(), _cpu()
            expected = "qr_masked" if mode == "mask" else "qr_listed"
            if expected not in report.reasons:
                raise RuntimeError(f"{mode}: {report.reasons}")
            if index == 0:
                continue  # warm-up, excluded
            walls[mode].append(t1 - t0)
            cpus[mode].append(c1 - c0)
    result = Result(
        NAME, TITLE, ratio(median(walls["mask"]), median(walls["list"])), "mask ms / list ms"
    )
    ms = "{:.0f}"
    for mode in ("mask", "list"):
        note = "baseline" if mode == "list" else ""
        result.add(
            f"{mode}: wall per PDF", spread([w * 1000 for w in walls[mode]], ms) + " ms", note
        )
        result.add(
            f"{mode}: CPU per PDF (all processes)",
            spread([c * 1000 for c in cpus[mode]], ms) + " ms",
        )
    result.add("CPU ratio mask / list", f"{ratio(median(cpus['mask']), median(cpus['list'])):.2f}x")
    result.add("PDFs", f"{n}", "5 pages at 150 dpi, one QR code on page 3; one warm-up excluded")
    return result
