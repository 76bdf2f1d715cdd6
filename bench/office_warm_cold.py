"""office_warm_cold: a small Japanese docx through the warm LibreOffice pool vs a cold soffice.

Warm: `OfficePool(1).to_pdf` (the first call, which starts the listener, is excluded). Cold:
`soffice --headless --convert-to pdf` with a fresh user profile each time, as a converter
without a pool would do it. Both convert the same bytes to PDF; runs interleave.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Result, median, ratio, spread
from bench.payloads import docx_ja

NAME = "office_warm_cold"
TITLE = "docx → PDF: warm LibreOffice pool vs cold soffice per document"
TIMEOUT = 180.0


def cold_convert(src: Path, work: Path) -> bytes:
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        out = Path(tmp) / "out"
        subprocess.run(
            [
                "soffice", "--headless", "--norestore", "--nologo",
                f"-env:UserInstallation=file://{Path(tmp) / 'profile'}",
                "--convert-to", "pdf", "--outdir", str(out), str(src),
            ],
            capture_output=True, check=True, timeout=TIMEOUT,
        )  # fmt: skip
        return (out / f"{src.stem}.pdf").read_bytes()


def pdf_text(data: bytes) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        return "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


def run(work: Path, quick: bool) -> Result:
    from gateway.sanitize.office import OfficePool

    warm_n, cold_n = (2, 1) if quick else (10, 5)
    data = docx_ja()
    src = work / "通知.docx"
    src.write_bytes(data)
    warm: list[float] = []
    cold: list[float] = []
    with OfficePool(1) as pool:
        t0 = time.monotonic()
        first = pool.to_pdf(data, "docx", timeout=TIMEOUT)
        first_s = time.monotonic() - t0
        if "会議" not in pdf_text(first):
            raise RuntimeError("the pool's PDF lacks the Japanese text")
        per_cold = max(1, warm_n // cold_n)
        for i in range(warm_n):
            t0 = time.monotonic()
            pool.to_pdf(data, "docx", timeout=TIMEOUT)
            warm.append(time.monotonic() - t0)
            if i % per_cold == 0 and len(cold) < cold_n:
                t0 = time.monotonic()
                out = cold_convert(src, work)
                cold.append(time.monotonic() - t0)
                if not out.startswith(b"%PDF"):
                    raise RuntimeError("soffice returned no PDF")
    result = Result(
        NAME, TITLE, ratio(median(cold), median(warm)),
        "cold seconds / warm seconds", "≥ 5x",
    )  # fmt: skip
    result.add("warm pool, per document", spread([w * 1000 for w in warm], "{:.0f}") + " ms")
    result.add("cold soffice, per document", spread([c * 1000 for c in cold], "{:.0f}") + " ms")
    result.add("first pool call (start + convert)", f"{first_s * 1000:.0f} ms", "excluded")
    result.add("input", f"{len(data)} B docx, Japanese text, 1 page")
    return result
