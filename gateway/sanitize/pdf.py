"""PDF → pixels → new PDF (the Dangerzone idea).

Untrusted parsing happens only in sandboxed children (``render_child``): one counts the pages,
then several render page ranges in parallel and stream raw frames back. The trusted side
re-checks every number (page index, width, height, channels, exact byte count), encodes each
page as it arrives (so a 300-page PDF never holds 300 raw bitmaps) and builds the output PDF
itself with img2pdf, so the result contains nothing but one image per page.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import img2pdf
from PIL import Image

from gateway.errors import (
    ConversionFailed,
    ConversionTimeout,
    ConverterBusy,
    Encrypted,
    InvalidOutput,
    PartTooLarge,
)
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize import render_child as proto
from gateway.sanitize import sandbox
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

log = logging.getLogger(__name__)

_CHILD = "gateway.sanitize.render_child"
# Below this many pages per child, another process costs more than it saves.
_MIN_PAGES_PER_CHILD = 4
# Raw pages handed to the trusted encoder processes at once (each up to max_pixels × 3 bytes).
_MAX_INFLIGHT = 2 * (os.cpu_count() or 1)
# JPEG and PDF viewers cope badly beyond this side length, whatever the pixel cap says.
_MAX_SIDE = 65_000
# Thumbnail colour count above which an RGB page is treated as a photo (JPEG).
_PHOTO_COLOURS = 4096
_THUMB = 256
_JPEG_QUALITY = 85
# A PNG above this many bits per pixel is photo-like after all: try JPEG and keep the smaller.
_PNG_BITS_PER_PIXEL_LIMIT = 4.0


# --- the trusted frame reader ----------------------------------------------------------------


# index, width, height, channels, raw pixels (the reader's own buffer, handed over, not copied)
PageSink = Callable[[int, int, int, int, bytearray], None]


class FrameReader:
    """Incremental, validating parser of the child's frame stream.

    Every number is checked before memory is committed: a header announcing an oversized page
    is rejected before its body is read.
    """

    def __init__(
        self,
        *,
        first: int,
        last: int,
        max_pixels: int,
        channels: frozenset[int],
        on_page: PageSink,
    ) -> None:
        self._next = first
        self._last = last
        self._max_pixels = max_pixels
        self._channels = channels
        self._on_page = on_page
        self._head = bytearray()
        self._body: bytearray | None = None
        self._filled = 0
        self._page: tuple[int, int, int, int] | None = None
        self.count: int | None = None
        self.error: int | None = None
        self.error_index = 0
        self.extra = 0
        self.ended = False
        self.pages = 0

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._body is not None:
                take = min(len(view), len(self._body) - self._filled)
                self._body[self._filled : self._filled + take] = view[:take]
                self._filled += take
                view = view[take:]
                if self._filled == len(self._body):
                    self._finish_page()
                continue
            need = proto.HEADER.size - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) == proto.HEADER.size:
                header = bytes(self._head)
                self._head.clear()
                self._header(header)

    def _header(self, raw: bytes) -> None:
        magic, kind, channels, code, index, width, height, extra = proto.HEADER.unpack(raw)
        if magic != proto.MAGIC:
            raise InvalidOutput("bad frame magic")
        if self.ended or self.error is not None:
            raise InvalidOutput("data after the last frame")
        if kind == proto.KIND_PAGE:
            if index != self._next or index > self._last:
                raise InvalidOutput(f"unexpected page index {index}")
            if channels not in self._channels:
                raise InvalidOutput("unexpected channel count")
            if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
                raise InvalidOutput("page size out of range")
            if width * height > self._max_pixels:
                raise PartTooLarge(f"page {index + 1} exceeds the pixel limit")
            self._page = (index, width, height, channels)
            self.extra = extra
            self._body = bytearray(width * height * channels)
            self._filled = 0
        elif kind == proto.KIND_COUNT:
            if self.count is not None:
                raise InvalidOutput("two page counts")
            self.count = index
        elif kind == proto.KIND_ERROR:
            self.error = code
            self.error_index = index
        elif kind == proto.KIND_END:
            if index != self.pages:
                raise InvalidOutput("end frame disagrees with the pages sent")
            self.ended = True
        else:
            raise InvalidOutput("unknown frame kind")

    def _finish_page(self) -> None:
        assert self._body is not None and self._page is not None
        index, width, height, channels = self._page
        body = self._body
        self._body = None
        self._page = None
        self._next += 1
        self.pages += 1
        self._on_page(index, width, height, channels, body)

    def check_complete(self, result: sandbox.RunResult) -> None:
        """Map the child's end state onto the exception tree; silent when all went well."""
        if result.killed in ("timeout", "cpu"):
            raise ConversionTimeout(f"renderer killed ({result.killed})")
        if result.killed == "output_too_large":
            raise InvalidOutput("renderer output too large")
        if self.error is not None:
            raise _refusal(self.error, self.error_index)
        if result.killed == "memory":
            raise PartTooLarge("renderer ran out of memory")
        if result.returncode != 0:
            raise ConversionFailed(f"renderer exited with {result.returncode}")
        if self._head or self._body is not None or not self.ended:
            raise InvalidOutput("truncated frame stream")


def _refusal(code: int, index: int) -> Exception:
    if code == proto.ERR_ENCRYPTED:
        return Encrypted("password-protected PDF")
    if code == proto.ERR_TOO_LARGE:
        return PartTooLarge(f"page {index + 1} exceeds the pixel limit")
    return ConversionFailed("the file could not be read")


# --- process slots ---------------------------------------------------------------------------

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _slot(size: int) -> threading.BoundedSemaphore:
    """Process-wide cap on render children, shared by all worker threads."""
    with _slots_lock:
        if size not in _slots:
            _slots[size] = threading.BoundedSemaphore(size)
        return _slots[size]


def _process_count(ctx: Context) -> int:
    return max(1, ctx.limits.processes or os.cpu_count() or 1)


_RENDER_PROCESSES = 64


def _child_limits(ctx: Context, seconds: float, output_bytes: int) -> sandbox.Limits:
    # RLIMIT_NPROC: each jail has its own user namespace, so the count is this child's own
    # processes and threads (not the uid's across all jobs); a fork bomb stops there. (Not
    # enforced by the kernel for a gateway running as root; the PID namespace still ends it.)
    return sandbox.Limits(
        seconds=max(seconds, 1.0),
        memory_mb=ctx.limits.memory_mb,
        max_output_bytes=output_bytes,
        max_processes=_RENDER_PROCESSES,
    )


def run_child(
    args: list[str],
    data: bytes,
    ctx: Context,
    *,
    seconds: float,
    output_bytes: int,
    reader: FrameReader,
    abort: threading.Event | None = None,
) -> None:
    """Run one render_child invocation, feeding its stdout to ``reader``; raises on failure."""
    slot = _slot(_process_count(ctx))
    # Waiting for a slot is load, not the document's fault: retry later rather than time out,
    # and the child's own time starts when it does.
    if not slot.acquire(timeout=seconds):
        raise ConverterBusy("no free render process")
    try:

        def sink(chunk: bytes) -> None:
            if abort is not None and abort.is_set():
                raise _Aborted
            reader.feed(chunk)

        result = sandbox.run(
            [*sandbox.python_child(_CHILD), *args],
            stdin=data,
            limits=_child_limits(ctx, seconds, output_bytes),
            network=ctx.limits.network_isolation,
            sink=sink,
        )
    finally:
        slot.release()
    reader.check_complete(result)


class _Aborted(Exception):
    """A sibling child failed: stop this one too."""


# --- page encoding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedPage:
    data: bytes
    content_type: str  # image/png or image/jpeg


def encode_pixels(
    width: int, height: int, channels: int, raw: bytes | bytearray, dpi: int
) -> EncodedPage:
    """Trusted re-encoding of raw pixels: PNG for text-like pages, JPEG for photo-like ones."""
    mode = {1: "L", 3: "RGB"}[channels]
    image = Image.frombuffer(mode, (width, height), raw, "raw", mode, 0, 1)
    if mode == "RGB" and _photo_like(image):
        return EncodedPage(_jpeg(image, dpi), "image/jpeg")
    png = _png(image, dpi)
    if len(png) * 8 > width * height * _PNG_BITS_PER_PIXEL_LIMIT:
        jpeg = _jpeg(image, dpi)
        if len(jpeg) < len(png):
            return EncodedPage(jpeg, "image/jpeg")
    return EncodedPage(png, "image/png")


def _photo_like(image: Image.Image) -> bool:
    # NEAREST keeps the original colours (a filter would invent new ones between them).
    thumb = image.resize(
        (min(image.width, _THUMB), min(image.height, _THUMB)), Image.Resampling.NEAREST
    )
    return thumb.getcolors(maxcolors=_PHOTO_COLOURS) is None


def _png(image: Image.Image, dpi: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def _jpeg(image: Image.Image, dpi: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=_JPEG_QUALITY, dpi=(dpi, dpi), optimize=True)
    return buf.getvalue()


# --- the pipeline ----------------------------------------------------------------------------


def count_pages(data: bytes, ctx: Context) -> int:
    """Page count from a sandboxed child; refuses encrypted and unreadable documents."""
    reader = FrameReader(first=0, last=-1, max_pixels=0, channels=frozenset(), on_page=_no_pages)
    run_child(
        ["count"],
        data,
        ctx,
        seconds=ctx.limits.min_seconds,
        output_bytes=4 * proto.HEADER.size,
        reader=reader,
    )
    if reader.count is None:
        raise InvalidOutput("no page count")
    return reader.count


def _no_pages(index: int, width: int, height: int, channels: int, raw: bytearray) -> None:
    raise InvalidOutput("page frame where a count was expected")


def _ranges(pages: int, children: int) -> list[tuple[int, int]]:
    children = max(1, min(children, pages // _MIN_PAGES_PER_CHILD or 1))
    size, rest = divmod(pages, children)
    ranges = []
    start = 0
    for i in range(children):
        end = start + size + (1 if i < rest else 0)
        ranges.append((start, end - 1))
        start = end
    return ranges


def check_page_points(index: int, width: int, height: int, dpi: int) -> None:
    """The output page must be a valid PDF page: 3 to 14,400 units per side (PDF limits)."""
    points = (width * 72 / dpi, height * 72 / dpi)
    if max(points) > proto.MAX_POINTS:
        raise PartTooLarge(f"page {index + 1} is larger than 200 inches")
    if min(points) < proto.MIN_POINTS - 72 / dpi:  # one pixel of rounding
        raise ConversionFailed(f"page {index + 1} is too small to be a page")


def render_pages(data: bytes, pages: int, ctx: Context) -> list[EncodedPage]:
    """Render all pages in parallel children; returns encoded pages in order."""
    dpi = ctx.limits.dpi
    max_pixels = ctx.limits.max_pixels
    seconds = max(ctx.limits.min_seconds, pages * ctx.limits.seconds_per_page)
    deadline = time.monotonic() + seconds
    pending: dict[int, Future[EncodedPage]] = {}
    lock = threading.Lock()
    abort = threading.Event()
    encoder = sandbox.trusted_pool()
    # Raw pages waiting for an encoder are bounded: the reader blocks, the child's pipe fills,
    # the child waits. A 300-page PDF never holds more than a few raw bitmaps.
    inflight = threading.BoundedSemaphore(_MAX_INFLIGHT)

    def on_page(index: int, width: int, height: int, channels: int, raw: bytearray) -> None:
        check_page_points(index, width, height, dpi)
        if not inflight.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise ConversionTimeout("page encoding did not keep up within the time budget")
        try:
            future = encoder.submit(encode_pixels, width, height, channels, bytes(raw), dpi)
        except BaseException:
            inflight.release()
            raise
        future.add_done_callback(lambda _f: inflight.release())
        with lock:
            pending[index] = future

    def one(first: int, last: int) -> None:
        reader = FrameReader(
            first=first,
            last=last,
            max_pixels=max_pixels,
            channels=frozenset({1, 3}),
            on_page=on_page,
        )
        count = last - first + 1
        try:
            run_child(
                ["render", str(dpi), str(first), str(last), str(max_pixels)],
                data,
                ctx,
                seconds=deadline - time.monotonic(),
                output_bytes=count * (max_pixels * 3 + proto.HEADER.size) + 2 * proto.HEADER.size,
                reader=reader,
                abort=abort,
            )
        except BaseException:
            abort.set()
            raise
        if reader.pages != count:
            raise InvalidOutput("renderer skipped pages")

    ranges = _ranges(pages, _process_count(ctx))
    with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="render") as pool:
        futures = [pool.submit(one, first, last) for first, last in ranges]
        errors = [f.exception() for f in futures]
    real = [e for e in errors if e is not None and not isinstance(e, _Aborted)]
    if real:
        raise real[0]
    if any(e is not None for e in errors):  # only aborts: cannot happen, but never pass it
        raise ConversionFailed("rendering aborted")
    if sorted(pending) != list(range(pages)):
        raise InvalidOutput("pages missing")
    encoded: list[EncodedPage] = []
    try:
        for i in range(pages):
            encoded.append(pending[i].result(timeout=max(0.0, deadline - time.monotonic())))
    except FuturesTimeout as exc:
        raise ConversionTimeout("page encoding exceeded the time budget") from exc
    except BrokenProcessPool as exc:
        sandbox.reset_trusted_pool()
        raise ConversionFailed("page encoder died; try again") from exc
    except (OSError, ValueError) as exc:
        raise ConversionFailed(f"page encoding failed: {type(exc).__name__}") from exc
    return encoded


def build_pdf(pages: list[EncodedPage], dpi: int) -> bytes:
    """One image per page; the page size is pixels / dpi."""
    layout = img2pdf.get_fixed_dpi_layout_fun((dpi, dpi))
    try:
        out = img2pdf.convert([p.data for p in pages], layout_fun=layout, nodate=True)
    except Exception as exc:  # img2pdf raises plain exceptions on odd input
        raise ConversionFailed(f"PDF assembly failed: {type(exc).__name__}") from exc
    assert isinstance(out, bytes)
    return out


def _ocr_text_layer(pdf: bytes, pages: list[EncodedPage], ctx: Context) -> bytes:
    # HOOK(ocr): an optional invisible text layer (e.g. Tesseract jpn in the sandbox) would be
    # added here, from the trusted page images only. Not implemented: returns the PDF unchanged.
    return pdf


def _rebuild(pdf_bytes: bytes, stem: str, ctx: Context) -> tuple[CleanFile, int]:
    pages = count_pages(pdf_bytes, ctx)
    if pages < 1:
        raise ConversionFailed("the document has no pages")
    if pages > ctx.limits.max_pages:
        raise PartTooLarge(f"{pages} pages (limit {ctx.limits.max_pages})")
    ctx.pages.take(pages)
    encoded = render_pages(pdf_bytes, pages, ctx)
    out = _ocr_text_layer(build_pdf(encoded, ctx.limits.dpi), encoded, ctx)
    clean = CleanFile(
        filename=clean_name(f"{stem}.pdf", "pdf"),
        content_type="application/pdf",
        data=out,
    )
    return clean, pages


def render_pdf_to_clean_pdf(pdf_bytes: bytes, stem: str, ctx: Context) -> CleanFile:
    """Rebuild any PDF (also LibreOffice's output) as an image-only PDF named ``<stem>.pdf``.

    Takes the pages from ``ctx.pages``; raises the same refusals as ``sanitize_pdf``.
    """
    return _rebuild(pdf_bytes, stem, ctx)[0]


def sanitize_pdf(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    stem = clean_name(filename, "pdf").removesuffix(".pdf")
    clean, pages = _rebuild(data, stem, ctx)
    return SanitizeResult(
        files=(clean,),
        action=Action.CONVERTED,
        detail=f"rendered to images ({pages} pages, {ctx.limits.dpi} dpi)",
    )
