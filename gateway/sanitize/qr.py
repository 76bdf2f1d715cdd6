"""QR codes and barcodes in what we deliver (issue 16).

Rendering to pixels keeps a phishing QR code fully working: a phone scan is a click no link
disarming can stop. So every rebuilt image and images-only PDF is read by a sandboxed child
(qr_child.py, zxing-cpp); each decoded text is listed disarmed in the notice and the record,
and with ``[sanitize] qr = "mask"`` the code is painted over in rebuilt images.

Fail closed: when the child cannot read a file (crash, timeout), the part is removed, since
an unread image may carry a working code. Bounded: ``MAX_CODES`` codes per file, pages as
``max_pages``, time as the other converters.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw

from gateway.errors import ConversionFailed
from gateway.mime.defang import defang_text, defang_url
from gateway.model import CleanFile
from gateway.sanitize import sandbox
from gateway.sanitize.base import Context

_CHILD = "gateway.sanitize.qr_child"
MAX_CODES = 20
_KINDS = {"image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf"}
# Pages of a PDF are read at a modest resolution: QR codes are decoded well below print dpi.
_PDF_DPI = 100
_URI = re.compile(r"^\s*[a-z][a-z0-9+.-]{0,30}:", re.I)
_MARGIN = 0.15  # of the code's size, painted beyond its finder corners (the quiet zone)


@dataclass(frozen=True)
class Code:
    page: int
    text: str
    format: str
    box: tuple[int, int, int, int]


def find_codes(data: bytes, content_type: str, ctx: Context) -> list[Code]:
    kind = _KINDS[content_type]
    limits = ctx.limits
    result = sandbox.run(
        [*sandbox.python_child(_CHILD), kind, str(limits.max_pages), str(_PDF_DPI), str(MAX_CODES)],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(limits.min_seconds, 1.0),
            memory_mb=limits.memory_mb,
            max_output_bytes=MAX_CODES * 8192,
        ),
        network=limits.network_isolation,
    )
    if result.killed is not None or result.returncode != 0:
        raise ConversionFailed(f"QR code check failed ({result.killed or result.returncode})")
    codes: list[Code] = []
    for line in result.stdout.decode("ascii", "replace").splitlines()[:MAX_CODES]:
        try:
            rec = json.loads(line)
            box = tuple(int(v) for v in rec["box"][:4])
            codes.append(Code(int(rec["page"]), str(rec["text"]), str(rec["format"]), box))  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConversionFailed("QR code check returned garbage") from exc
    return codes


def shown(code: Code) -> str:
    """The decoded text as the notice shows it: links disarmed, one line, bounded. A code
    that is a URI of any scheme (``javascript:``, ``data:``, ``tel:``) is shown the way the
    body's link targets are; other text has its URLs disarmed."""
    text = " ".join(code.text.split())[:300]
    if _URI.match(text):
        return defang_url(text) or "[link removed]"
    return defang_text(text)[0]


def _mask(data: bytes, content_type: str, codes: list[Code]) -> bytes:
    # Our own rebuilt image (encoded by image.py from raw pixels), not the sender's file.
    with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as img:
        img.load()
        out = img.copy()
    draw = ImageDraw.Draw(out)
    for code in codes:
        x0, y0, x1, y1 = code.box
        pad = int(max(x1 - x0, y1 - y0) * _MARGIN) + 4
        fill = 0 if out.mode in ("L", "1") else (0, 0, 0)
        draw.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), fill=fill)
    buf = io.BytesIO()
    if content_type == "image/png":
        out.save(buf, "PNG", optimize=False)
    else:
        out.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def inspect(
    files: tuple[CleanFile, ...], ctx: Context
) -> tuple[tuple[CleanFile, ...], tuple[str, ...], bool]:
    """(files, the decoded texts as shown, whether any code was masked)."""
    mode = ctx.limits.qr
    out: list[CleanFile] = []
    texts: list[str] = []
    masked = False
    for f in files:
        if f.content_type not in _KINDS:
            out.append(f)
            continue
        codes = find_codes(f.data, f.content_type, ctx)
        texts.extend(shown(c) for c in codes)
        if codes and mode == "mask" and f.content_type != "application/pdf":
            f = dataclasses.replace(f, data=_mask(f.data, f.content_type, codes))
            masked = True
        out.append(f)
    return tuple(out), tuple(dict.fromkeys(texts))[:MAX_CODES], masked
