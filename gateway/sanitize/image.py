"""Images: decoded in a sandboxed child, re-encoded here from raw pixels.

Pillow's decoders have a long CVE history, so the untrusted file is only ever opened inside
``render_child`` (with ``Image.MAX_IMAGE_PIXELS`` set from the header before any pixel is
decoded). The child applies the EXIF orientation and returns raw pixels; this side re-checks the
numbers and writes a new PNG or JPEG that carries no metadata at all (no EXIF, GPS, ICC, XMP,
text chunks), because nothing but the pixels is copied.
"""

from __future__ import annotations

import io

from PIL import Image

from gateway.errors import InvalidOutput
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize import render_child as proto
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name
from gateway.sanitize.pdf import FrameReader, run_child

_JPEG_QUALITY = 85
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_JPEG_KINDS = frozenset({"jpeg", "jpg"})
# Detected type → the one Pillow decoder the child may use.
_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "pjpeg": "JPEG",
    "gif": "GIF",
    "bmp": "BMP",
    "x-ms-bmp": "BMP",
    "tiff": "TIFF",
    "tif": "TIFF",
    "webp": "WEBP",
}


def _pillow_format(detected: Detected) -> str:
    """One expected decoder; "ANY" (the six allowed ones) when the kind is not recognised."""
    for key in (detected.kind.lower(), detected.mime.lower().rpartition("/")[2]):
        if key in _FORMATS:
            return _FORMATS[key]
    return "ANY"


def _is_jpeg(detected: Detected) -> bool:
    return detected.kind.lower() in _JPEG_KINDS or detected.mime.lower() in (
        "image/jpeg",
        "image/pjpeg",
    )


def sanitize_image(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    """png, jpeg, gif (first frame), bmp, tiff (first page), webp → PNG, or JPEG for photos."""
    max_pixels = ctx.limits.max_pixels
    got: list[tuple[int, int, int, bytearray]] = []

    def on_page(index: int, width: int, height: int, channels: int, raw: bytearray) -> None:
        got.append((width, height, channels, raw))

    reader = FrameReader(
        first=0, last=0, max_pixels=max_pixels, channels=frozenset(_MODES), on_page=on_page
    )
    run_child(
        ["image", str(max_pixels), _pillow_format(detected)],
        data,
        ctx,
        seconds=ctx.limits.min_seconds,
        output_bytes=max_pixels * 4 + 4 * proto.HEADER.size,
        reader=reader,
    )
    if len(got) != 1:
        raise InvalidOutput("the decoder returned no image")
    width, height, channels, raw = got[0]
    frames = reader.extra

    mode = _MODES[channels]
    image = Image.frombuffer(mode, (width, height), raw, "raw", mode, 0, 1)
    buf = io.BytesIO()
    # Only pixels are written: no exif=, icc_profile=, pnginfo= ⇒ no metadata in the output.
    if _is_jpeg(detected) and mode != "RGBA":
        image.save(buf, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
        ext, content_type = "jpg", "image/jpeg"
    else:
        image.save(buf, format="PNG")
        ext, content_type = "png", "image/png"

    detail = f"re-encoded as {ext.upper()} ({width}x{height}), metadata removed"
    if frames > 1:
        detail += f"; first of {frames} frames only"
    return SanitizeResult(
        files=(CleanFile(clean_name(filename, ext), content_type, buf.getvalue()),),
        action=Action.CONVERTED,
        detail=detail,
    )
