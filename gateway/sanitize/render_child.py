"""Runs INSIDE the sandbox: parses untrusted PDFs and images and emits raw pixels.

Usage (input on stdin, frames on stdout)::

    python -I -m gateway.sanitize.render_child count
    python -I -m gateway.sanitize.render_child render DPI FIRST LAST MAX_PIXELS
    python -I -m gateway.sanitize.render_child image MAX_PIXELS FORMAT

Every frame starts with a fixed header (``HEADER``): magic, kind, channels, code, index,
width, height, extra. A PAGE frame is followed by exactly width*height*channels raw bytes
(row-major, 8 bits per sample; 1 = gray, 3 = RGB, 4 = RGBA). The last frame of a successful run
is END. Nothing here is trusted by the parent: it re-checks every number.

Colour: a quarter-resolution RGB probe decides. Pages with no colour at all are rendered in
gray directly (about 4x faster than RGB, and the PNG is smaller); pages with any colour are
rendered RGB and still sent as gray when R == G == B everywhere. Red stamps (印鑑) and coloured
marks matter in official mail: anti-aliasing makes even thin coloured lines visible to the probe.

This module imports only the standard library at import time; pypdfium2 and Pillow are
imported in the child only.
"""

from __future__ import annotations

import struct
import sys
from typing import IO, Any

HEADER = struct.Struct(">4sBBHIIII")
MAGIC = b"MGF1"

KIND_PAGE = 1
KIND_COUNT = 2
KIND_ERROR = 3
KIND_END = 4

ERR_ENCRYPTED = 1
ERR_TOO_LARGE = 2
ERR_INVALID = 3

# Exit codes (the parent treats anything but 0 + END as failure).
EXIT_OK = 0
EXIT_REFUSED = 3  # an ERROR frame was written
EXIT_USAGE = 2

_PDFIUM_ERR_PASSWORD = 4
# A PDF page side is 3 to 14,400 units (ISO 32000 implementation limits; img2pdf enforces them).
MIN_POINTS = 3.0
MAX_POINTS = 14_400.0


def _frame(
    out: IO[bytes],
    kind: int,
    *,
    channels: int = 0,
    code: int = 0,
    index: int = 0,
    width: int = 0,
    height: int = 0,
    extra: int = 0,
) -> None:
    out.write(HEADER.pack(MAGIC, kind, channels, code, index, width, height, extra))


def _error(out: IO[bytes], code: int, index: int = 0) -> int:
    _frame(out, KIND_ERROR, code=code, index=index)
    out.flush()
    return EXIT_REFUSED


def _open_pdf(data: bytes, out: IO[bytes]) -> Any:
    import pypdfium2 as pdfium

    try:
        # No password: an encrypted document that needs one is reported, never guessed.
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = ERR_ENCRYPTED if exc.err_code == _PDFIUM_ERR_PASSWORD else ERR_INVALID
        _error(out, code)
        return None


def count(data: bytes, out: IO[bytes]) -> int:
    pdf = _open_pdf(data, out)
    if pdf is None:
        return EXIT_REFUSED
    _frame(out, KIND_COUNT, index=len(pdf))
    _frame(out, KIND_END)
    out.flush()
    return EXIT_OK


def _gray_if_possible(image: Any) -> Any:
    from PIL import ImageChops

    r, g, b = image.split()
    if ImageChops.difference(r, g).getbbox() is None and (
        ImageChops.difference(g, b).getbbox() is None
    ):
        return r
    return image


# Colour probe at a quarter of the resolution: anti-aliasing turns even a thin coloured line
# into tinted pixels there, so stamps and coloured marks are still seen.
_PROBE_DIVISOR = 4


def _render_page(page: Any, scale: float) -> Any:
    """Gray pages rendered in gray (faster, and smaller once encoded); colour kept otherwise."""
    probe = page.render(scale=scale / _PROBE_DIVISOR, may_draw_forms=False, rev_byteorder=True)
    coloured = _gray_if_possible(probe.to_pil().convert("RGB")).mode != "L"
    probe.close()
    if coloured:
        bitmap = page.render(scale=scale, may_draw_forms=False, rev_byteorder=True)
        image = _gray_if_possible(bitmap.to_pil().convert("RGB"))
    else:
        bitmap = page.render(scale=scale, may_draw_forms=False, grayscale=True)
        image = bitmap.to_pil().convert("L")
    bitmap.close()
    return image


def render(data: bytes, out: IO[bytes], dpi: int, first: int, last: int, max_pixels: int) -> int:
    pdf = _open_pdf(data, out)
    if pdf is None:
        return EXIT_REFUSED
    if first < 0 or last >= len(pdf) or first > last:
        return _error(out, ERR_INVALID, first)
    import pypdfium2 as pdfium

    try:
        return _render_pages(pdf, out, dpi / 72.0, first, last, max_pixels)
    except pdfium.PdfiumError:
        return _error(out, ERR_INVALID)


def _render_pages(
    pdf: Any, out: IO[bytes], scale: float, first: int, last: int, max_pixels: int
) -> int:
    sent = 0
    for index in range(first, last + 1):
        page = pdf[index]
        w_pt, h_pt = page.get_size()
        if not (MIN_POINTS <= w_pt and MIN_POINTS <= h_pt):  # also catches NaN
            return _error(out, ERR_INVALID, index)
        if w_pt > MAX_POINTS or h_pt > MAX_POINTS:
            return _error(out, ERR_TOO_LARGE, index)
        # Refuse before allocating the bitmap: the page size is attacker-chosen.
        if (w_pt * scale + 1) * (h_pt * scale + 1) > max_pixels:
            return _error(out, ERR_TOO_LARGE, index)
        # may_draw_forms=False and no init_forms(): form fields and their JavaScript never run;
        # annotation appearance streams (static graphics such as stamps) are still drawn.
        image = _render_page(page, scale)
        page.close()
        channels = 1 if image.mode == "L" else 3
        _frame(
            out,
            KIND_PAGE,
            channels=channels,
            index=index,
            width=image.width,
            height=image.height,
        )
        out.write(image.tobytes())
        out.flush()
        sent += 1
    _frame(out, KIND_END, index=sent)
    out.flush()
    return EXIT_OK


# The only decoders the child may use: one expected format keeps the attack surface to it.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


def decode_image(data: bytes, out: IO[bytes], max_pixels: int, fmt: str) -> int:
    import io
    import warnings

    from PIL import Image, ImageOps

    # Header-declared size checked by Pillow at open(), before any pixel is decoded; the
    # warning band (between MAX and 2×MAX) is made an error too.
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        formats = IMAGE_FORMATS if fmt == "ANY" else (fmt,)
        if not set(formats) <= set(IMAGE_FORMATS):
            return _error(out, ERR_INVALID)
        opened = Image.open(io.BytesIO(data), formats=formats)
        if opened.width * opened.height > max_pixels:
            return _error(out, ERR_TOO_LARGE)
        frames = int(getattr(opened, "n_frames", 1) or 1)
        opened.seek(0)  # GIF/TIFF/WebP: first frame only
        opened.load()
        # Orientation first (it lives in EXIF, which is dropped with everything else).
        image = _plain_mode(ImageOps.exif_transpose(opened))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _error(out, ERR_TOO_LARGE)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, TypeError):
        return _error(out, ERR_INVALID)
    if image.width * image.height > max_pixels:  # exif rotation cannot grow it; belt and braces
        return _error(out, ERR_TOO_LARGE)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[image.mode]
    _frame(
        out,
        KIND_PAGE,
        channels=channels,
        width=image.width,
        height=image.height,
        extra=min(frames, 0xFFFFFFFF),
    )
    out.write(image.tobytes())
    _frame(out, KIND_END, index=1)
    out.flush()
    return EXIT_OK


def _plain_mode(image: Any) -> Any:
    """Map every Pillow mode onto L, RGB or RGBA (8 bits per sample)."""
    mode = image.mode
    if mode in ("L", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Scale 16/32-bit samples down to 8 bits instead of clipping to white.
        src = image.convert("F") if mode != "F" else image
        lo, hi = src.getextrema()
        span = (hi - lo) or 1.0
        return src.point(lambda v: (v - lo) * 255.0 / span).convert("L")
    has_alpha = mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        return image.convert("RGBA")
    if mode == "P":
        return image.convert("RGB")
    return image.convert("RGB")


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    # The caller bounds the input size; read it all (pdfium needs random access anyway).
    data = sys.stdin.buffer.read()
    try:
        if argv[:1] == ["count"] and len(argv) == 1:
            return count(data, out)
        if argv[:1] == ["render"] and len(argv) == 5:
            dpi, first, last, max_pixels = (int(v) for v in argv[1:])
            return render(data, out, dpi, first, last, max_pixels)
        if argv[:1] == ["image"] and len(argv) == 3:
            return decode_image(data, out, int(argv[1]), argv[2])
    except MemoryError:
        return _error(out, ERR_TOO_LARGE)
    sys.stderr.write(
        "usage: render_child count|render DPI FIRST LAST MAX_PIXELS|image MAX FORMAT\n"
    )
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
