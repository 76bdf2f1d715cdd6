"""The physical-limit baseline for PDFs: ONE process, pypdfium2 gray render → PNG → img2pdf.

No sandbox, no page checks, no second core: what rebuilding a PDF from pixels costs at the
least with the same libraries. Run as `python -m bench.pdf_baseline IN OUT DPI`; prints JSON
``{"seconds", "pages", "bytes", "maxrss_mib"}`` (seconds from reading IN to writing OUT).
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time
from pathlib import Path


def rebuild(data: bytes, dpi: int) -> tuple[bytes, int]:
    import img2pdf
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    pngs = []
    for index in range(len(pdf)):
        page = pdf[index]
        bitmap = page.render(scale=dpi / 72, grayscale=True)
        buf = io.BytesIO()
        bitmap.to_pil().save(buf, format="PNG", dpi=(dpi, dpi))
        pngs.append(buf.getvalue())
        bitmap.close()
        page.close()
    count = len(pdf)
    pdf.close()
    layout = img2pdf.get_fixed_dpi_layout_fun((dpi, dpi))
    out = img2pdf.convert(pngs, layout_fun=layout, nodate=True)
    assert isinstance(out, bytes)
    return out, count


def main(argv: list[str]) -> int:
    src, dst, dpi = Path(argv[0]), Path(argv[1]), int(argv[2])
    import img2pdf  # noqa: F401  (imports outside the timed part, as for a warm service)
    import pypdfium2  # noqa: F401

    started = time.monotonic()
    out, pages = rebuild(src.read_bytes(), dpi)
    dst.write_bytes(out)
    seconds = time.monotonic() - started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "pages": pages, "bytes": len(out), "maxrss_mib": maxrss}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
