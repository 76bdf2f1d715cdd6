"""Child process: find QR codes and barcodes in a rebuilt image or images-only PDF.

Runs only through ``gateway.sanitize.sandbox.run`` (see qr.py): zxing-cpp (Apache-2.0) and
the image decoders see pixels that came from the sender. stdin: the file; argv: kind
("png" | "jpeg" | "pdf"), max_pages, dpi, max_codes. stdout: one JSON object per line,
``{"page": n, "text": ..., "format": ..., "box": [x0, y0, x1, y1]}`` with the box in
pixels of the image (for PDFs: of the page rendered at ``dpi``).

Second mode, ``pages SPEC`` (for ``qr = "mask"`` on rebuilt PDFs): SPEC is JSON
``[[page_index, width, height], ...]``; each listed page of the PDF on stdin is rendered to
exactly width x height RGB pixels and written as one JSON header line
``{"page": i, "width": w, "height": h}`` followed by w*h*3 raw bytes. The trusted side paints
the masks itself and encodes the page: nothing decoded here is trusted.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

from PIL import Image

MAX_TEXT = 2000  # characters of one decoded code that are kept


def _pages(data: bytes, kind: str, max_pages: int, dpi: int) -> Iterator[Image.Image]:
    if kind in ("png", "jpeg"):
        with Image.open(io.BytesIO(data), formats=["PNG" if kind == "png" else "JPEG"]) as img:
            img.load()
            yield img.convert("L")
        return
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        for index in range(min(len(pdf), max_pages)):
            page = pdf[index]
            try:
                yield page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
            finally:
                page.close()
    finally:
        pdf.close()


def pages(spec: list[list[int]]) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    try:
        for index, width, height in spec:
            page = pdf[index]
            try:
                scale = width / max(page.get_width(), 1.0)
                image = page.render(scale=scale).to_pil().convert("RGB")
            finally:
                page.close()
            if image.size != (width, height):
                image = image.resize((width, height))
            head = {"page": index, "width": width, "height": height}
            out.write(json.dumps(head).encode() + b"\n")
            out.write(image.tobytes())
    finally:
        pdf.close()
    out.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "pages":
        Image.MAX_IMAGE_PIXELS = 60_000_000
        return pages(json.loads(argv[1]))
    import zxingcpp

    kind, max_pages, dpi, max_codes = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    Image.MAX_IMAGE_PIXELS = 60_000_000
    data = sys.stdin.buffer.read()
    found = 0
    out = sys.stdout
    for page_no, image in enumerate(_pages(data, kind, max_pages, dpi), start=1):
        for code in zxingcpp.read_barcodes(image):
            if found >= max_codes:
                return 0
            pos = code.position
            xs = [pos.top_left.x, pos.top_right.x, pos.bottom_left.x, pos.bottom_right.x]
            ys = [pos.top_left.y, pos.top_right.y, pos.bottom_left.y, pos.bottom_right.y]
            record = {
                "page": page_no,
                "text": str(code.text)[:MAX_TEXT],
                "format": str(code.format).rsplit(".", 1)[-1],
                "box": [min(xs), min(ys), max(xs), max(ys)],
            }
            out.write(json.dumps(record, ensure_ascii=True) + "\n")
            found += 1
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
