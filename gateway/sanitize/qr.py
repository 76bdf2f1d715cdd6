"""QR codes and barcodes in what we deliver (issue 16).

Rendering to pixels keeps a phishing QR code fully working: a phone scan is a click no link
disarming can stop. So every rebuilt image and images-only PDF is read by a sandboxed child
(qr_child.py, zxing-cpp); each decoded text is listed disarmed in the notice and the record,
and with ``[sanitize] qr = "mask"`` the code is painted over in rebuilt images and in the
pages of rebuilt PDFs (see ``_mask_pdf``). A masked file is read again until no code is left
(``_MASK_ROUNDS``): a file with more codes than that is removed, never delivered half-masked.

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

import img2pdf
import pikepdf
from PIL import Image, ImageDraw

from gateway.errors import ConversionFailed, QrMaskIncomplete
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
_MASK_ROUNDS = 5  # find-and-paint rounds on one file: up to 5 x MAX_CODES codes are masked
_MAX_SIDE = 65_000


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


def _paint(img: Image.Image, boxes: list[tuple[float, float, float, float]]) -> None:
    draw = ImageDraw.Draw(img)
    fill = 0 if img.mode in ("L", "1") else (0, 0, 0)
    for x0, y0, x1, y1 in boxes:
        pad = int(max(x1 - x0, y1 - y0) * _MARGIN) + 4
        draw.rectangle((int(x0) - pad, int(y0) - pad, int(x1) + pad, int(y1) + pad), fill=fill)


def _mask(data: bytes, content_type: str, codes: list[Code]) -> bytes:
    # Our own rebuilt image (encoded by image.py from raw pixels), not the sender's file.
    with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as img:
        img.load()
        out = img.copy()
    _paint(out, [tuple(float(v) for v in c.box) for c in codes])  # type: ignore[misc]
    buf = io.BytesIO()
    if content_type == "image/png":
        out.save(buf, "PNG", optimize=False)
    else:
        out.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _page_images(pdf: pikepdf.Pdf) -> list[tuple[float, float, int, int]]:
    """(width pt, height pt, image width px, image height px) of every page of our own
    rebuilt PDF (img2pdf: exactly one image per page); anything else is refused."""
    out: list[tuple[float, float, int, int]] = []
    for page in pdf.pages:
        images = list(page.get_images(recursive=True).values())
        if len(images) != 1:
            raise ConversionFailed("rebuilt PDF page without exactly one image")
        box = [float(v) for v in page.mediabox]
        width, height = int(images[0].Width), int(images[0].Height)
        if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
            raise ConversionFailed("rebuilt PDF page image of an impossible size")
        out.append((box[2] - box[0], box[3] - box[1], width, height))
    return out


def _render_pages(data: bytes, spec: list[tuple[int, int, int]], ctx: Context) -> dict[int, bytes]:
    """Raw RGB pixels of the listed pages, rendered in the jail; every number re-checked."""
    limits = ctx.limits
    expected = {index: (w, h) for index, w, h in spec}
    total = sum(w * h * 3 + 128 for _, w, h in spec)
    pending = list(spec)
    got: dict[int, bytes] = {}
    buf = bytearray()

    def sink(chunk: bytes) -> None:
        buf.extend(chunk)
        while pending:
            end = buf.find(b"\n", 0, 128)
            if end < 0:
                if len(buf) >= 128:
                    raise ConversionFailed("page renderer sent a bad header")
                return
            try:
                head = json.loads(bytes(buf[:end]))
                index, width, height = int(head["page"]), int(head["width"]), int(head["height"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConversionFailed("page renderer sent a bad header") from exc
            if (index, width, height) != pending[0]:
                raise ConversionFailed("page renderer sent a page not asked for")
            size = width * height * 3
            if len(buf) < end + 1 + size:
                return
            got[index] = bytes(buf[end + 1 : end + 1 + size])
            del buf[: end + 1 + size]
            pending.pop(0)
        if buf:
            raise ConversionFailed("page renderer sent more than asked for")

    result = sandbox.run(
        [*sandbox.python_child(_CHILD), "pages", json.dumps([list(s) for s in spec])],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(limits.min_seconds, 1.0) * max(len(spec), 1),
            memory_mb=limits.memory_mb,
            max_output_bytes=total,
        ),
        network=limits.network_isolation,
        sink=sink,
    )
    if result.killed is not None or result.returncode != 0 or pending or buf:
        raise ConversionFailed(f"page rendering failed ({result.killed or result.returncode})")
    assert set(got) == set(expected)
    return got


def _mask_pdf(data: bytes, codes: list[Code], ctx: Context) -> bytes:
    """Paint over the codes in our rebuilt PDF: only the pages with codes are re-rendered (in
    the jail, to raw pixels), painted and encoded here, and put in place of the old pages;
    the old page images are no longer referenced and qpdf does not write them."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        sizes = _page_images(pdf)
        by_page: dict[int, list[Code]] = {}
        for code in codes:
            if not 1 <= code.page <= len(sizes):
                raise ConversionFailed("QR code check named a page that does not exist")
            by_page.setdefault(code.page - 1, []).append(code)
        spec = [(i, sizes[i][2], sizes[i][3]) for i in sorted(by_page)]
        if any(w * h > ctx.limits.max_pixels for _, w, h in spec):
            raise ConversionFailed("pages to mask exceed the pixel limit")
        raw = _render_pages(data, spec, ctx)
        for index, width, height in spec:
            pt_w, pt_h = sizes[index][0], sizes[index][1]
            # Boxes are in pixels of the page read at _PDF_DPI; the image has its own size.
            fx, fy = width / (pt_w * _PDF_DPI / 72), height / (pt_h * _PDF_DPI / 72)
            img = Image.frombuffer("RGB", (width, height), raw[index], "raw", "RGB", 0, 1)
            img = img.copy()
            boxes = [(c.box[0] * fx, c.box[1] * fy, c.box[2] * fx, c.box[3] * fy)
                     for c in by_page[index]]  # fmt: skip
            _paint(img, boxes)
            png = io.BytesIO()
            img.save(png, "PNG")
            layout = img2pdf.get_layout_fun((pt_w, pt_h))
            page_pdf = img2pdf.convert(png.getvalue(), layout_fun=layout, nodate=True)
            assert isinstance(page_pdf, bytes)
            with pikepdf.open(io.BytesIO(page_pdf)) as single:
                pdf.pages[index] = single.pages[0]
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True)
    return out.getvalue()


def _masked_until_clean(
    data: bytes, content_type: str, codes: list[Code], ctx: Context
) -> tuple[bytes, list[Code]]:
    """(the masked file, the codes found in later rounds)."""
    later: list[Code] = []
    for _ in range(_MASK_ROUNDS):
        if content_type == "application/pdf":
            data = _mask_pdf(data, codes, ctx)
        else:
            data = _mask(data, content_type, codes)
        codes = find_codes(data, content_type, ctx)  # what a phone would still read
        if not codes:
            return data, later
        later.extend(codes)
    raise QrMaskIncomplete(f"codes still readable after {_MASK_ROUNDS} masking rounds")


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
        if codes and mode == "mask":
            data, later = _masked_until_clean(f.data, f.content_type, codes, ctx)
            texts.extend(shown(c) for c in later)
            f = dataclasses.replace(f, data=data)
            masked = True
        out.append(f)
    return tuple(out), tuple(dict.fromkeys(texts))[:MAX_CODES], masked
