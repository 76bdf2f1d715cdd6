"""PDF rebuilding with the real renderer child, generated fixtures and the corpus."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import magic
import pikepdf
import pytest
from PIL import Image, ImageDraw

from gateway.errors import (
    ConversionFailed,
    ConversionTimeout,
    Encrypted,
    InvalidOutput,
    PartRefused,
    PartTooLarge,
)
from gateway.model import Action, Detected
from gateway.sanitize import pdf
from gateway.sanitize import render_child as proto
from gateway.sanitize.base import Context, PageBudget
from gateway.settings import SanitizeSettings
from tests.conftest import corpus_dir

pytestmark = pytest.mark.timeout(300)

DETECTED = Detected(kind="pdf", mime="application/pdf")
FORBIDDEN = {
    "/JS",
    "/JavaScript",
    "/OpenAction",
    "/AA",
    "/Launch",
    "/EmbeddedFile",
    "/EmbeddedFiles",
    "/RichMedia",
    "/XFA",
    "/AcroForm",
    "/URI",
    "/Annots",
    "/Font",
}


def ctx(**limits: object) -> Context:
    settings = SanitizeSettings(**limits)  # type: ignore[arg-type]
    return Context(limits=settings, pages=PageBudget(settings.max_pages_per_message))


# --- fixtures generated in code --------------------------------------------------------------


def text_pdf(pages: int, size: tuple[float, float] = (595, 842)) -> pikepdf.Pdf:
    """``pages`` pages of black text (Helvetica), each saying its number."""
    doc = pikepdf.new()
    font = doc.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    for i in range(pages):
        content = f"BT /F1 36 Tf 72 {size[1] - 100} Td (Page {i + 1}) Tj ET".encode()
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, size[0], size[1]],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=doc.make_stream(content),
        )
        doc.pages.append(pikepdf.Page(page))
    return doc


def to_bytes(doc: pikepdf.Pdf, **save: object) -> bytes:
    buf = io.BytesIO()
    doc.save(buf, **save)  # type: ignore[arg-type]
    return buf.getvalue()


def hostile_pdf() -> bytes:
    """Text page plus JavaScript, a launch action, an embedded file, a form and a link."""
    doc = text_pdf(1)
    js = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    doc.Root.OpenAction = doc.make_indirect(js)
    doc.Root.AA = pikepdf.Dictionary(
        WC=pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe"))
    )
    spec = pikepdf.Dictionary(
        Type=pikepdf.Name.Filespec,
        F=pikepdf.String("evil.exe"),
        EF=pikepdf.Dictionary(F=doc.make_stream(b"MZ\x90\x00payload")),
    )
    doc.Root.Names = pikepdf.Dictionary(
        EmbeddedFiles=pikepdf.Dictionary(Names=pikepdf.Array([pikepdf.String("evil.exe"), spec]))
    )
    link = pikepdf.Dictionary(
        Type=pikepdf.Name.Annot,
        Subtype=pikepdf.Name.Link,
        Rect=[72, 700, 300, 740],
        A=pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String("http://evil.example/")),
    )
    field = pikepdf.Dictionary(
        Type=pikepdf.Name.Annot,
        Subtype=pikepdf.Name.Widget,
        FT=pikepdf.Name.Tx,
        T=pikepdf.String("name"),
        Rect=[72, 600, 300, 640],
        AA=pikepdf.Dictionary(K=js),
    )
    doc.pages[0].Annots = doc.make_indirect(pikepdf.Array([link, doc.make_indirect(field)]))
    doc.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array([doc.pages[0].Annots[1]]))
    return to_bytes(doc)


def image_pdf(images: list[Image.Image], dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buf.getvalue()


# --- checks ----------------------------------------------------------------------------------


def _walk(obj: object, seen: set[tuple[int, int]]) -> Iterator[str]:
    if isinstance(obj, pikepdf.Object) and obj.is_indirect:
        key = obj.objgen
        if key in seen:
            return
        seen.add(key)
    if isinstance(obj, pikepdf.Name):  # values too: /S /JavaScript, /Type /Font
        yield str(obj)
    elif isinstance(obj, pikepdf.Dictionary) or (isinstance(obj, pikepdf.Stream)):
        for name in obj.keys():
            yield str(name)
            yield from _walk(obj.get(name), seen)
    elif isinstance(obj, pikepdf.Array):
        for item in obj:
            yield from _walk(item, seen)


def assert_image_only_pdf(data: bytes, pages: int | None = None) -> pikepdf.Pdf:
    """Independent check: libmagic says PDF, pikepdf opens it, every page is one image only."""
    assert magic.from_buffer(data, mime=True) == "application/pdf"
    doc = pikepdf.open(io.BytesIO(data))
    if pages is not None:
        assert len(doc.pages) == pages
    names: set[str] = set()
    seen: set[tuple[int, int]] = set()
    names.update(_walk(doc.trailer, seen))
    for obj in doc.objects:
        names.update(_walk(obj, seen))
    bad = names & FORBIDDEN
    assert not bad, " ".join(sorted(bad))
    for page in doc.pages:
        resources = page.obj.Resources
        assert set(resources.keys()) <= {"/XObject", "/ProcSet"}
        xobjects = list(resources.XObject.values())
        assert len(xobjects) == 1
        assert xobjects[0].Subtype == pikepdf.Name.Image
    return doc


def media_size(page: pikepdf.Page) -> tuple[float, float]:
    box = [float(v) for v in page.mediabox]
    return box[2] - box[0], box[3] - box[1]


# --- generated fixtures ----------------------------------------------------------------------


def test_multi_page_text_pdf_rebuilt_as_images() -> None:
    c = ctx()
    result = pdf.sanitize_pdf(to_bytes(text_pdf(6)), "見積書.pdf", DETECTED, c)
    assert result.action is Action.CONVERTED
    (clean,) = result.files
    assert clean.filename == "見積書.pdf" and clean.content_type == "application/pdf"
    doc = assert_image_only_pdf(clean.data, pages=6)
    for page in doc.pages:
        width, height = media_size(page)
        assert abs(width - 595) < 1 and abs(height - 842) < 1
        image = next(iter(page.obj.Resources.XObject.values()))
        assert image.ColorSpace == pikepdf.Name.DeviceGray  # black text ⇒ gray page
    assert c.pages.remaining == c.limits.max_pages_per_message - 6
    assert "6 pages" in result.detail


def test_page_sizes_kept_per_page() -> None:
    doc = text_pdf(1, (842, 595))  # landscape A4
    doc.pages.extend(text_pdf(1, (612, 792)).pages)  # letter
    out = pdf.sanitize_pdf(to_bytes(doc), "mixed.pdf", DETECTED, ctx(dpi=100)).files[0].data
    sizes = [media_size(p) for p in assert_image_only_pdf(out, pages=2).pages]
    assert abs(sizes[0][0] - 842) < 1 and abs(sizes[0][1] - 595) < 1
    assert abs(sizes[1][0] - 612) < 1 and abs(sizes[1][1] - 792) < 1


def test_hostile_objects_are_gone() -> None:
    source = pikepdf.open(io.BytesIO(hostile_pdf()))
    assert "/OpenAction" in source.Root and "/AcroForm" in source.Root  # the fixture is hostile
    out = pdf.sanitize_pdf(hostile_pdf(), "evil.pdf", DETECTED, ctx()).files[0].data
    assert_image_only_pdf(out, pages=1)
    assert b"app.alert" not in out and b"evil.example" not in out and b"MZ\x90" not in out


def test_colour_and_photo_pages() -> None:
    text = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(text).text((50, 50), "red stamp", fill="red")
    ImageDraw.Draw(text).ellipse((300, 300, 400, 400), outline=(200, 0, 0), width=5)
    photo = Image.effect_mandelbrot((600, 800), (-2, -1.5, 1, 1.5), 64).convert("RGB")
    photo = Image.merge(
        "RGB",
        (
            photo.split()[0],
            Image.linear_gradient("L").resize(photo.size),
            photo.split()[2].point(lambda v: 255 - v),
        ),
    )
    noise = Image.effect_noise((600, 800), 80).convert("RGB")
    photo = Image.blend(photo, noise, 0.3)
    out = pdf.sanitize_pdf(image_pdf([text, photo]), "p.pdf", DETECTED, ctx()).files[0].data
    doc = assert_image_only_pdf(out, pages=2)
    images = [next(iter(p.obj.Resources.XObject.values())) for p in doc.pages]
    assert images[0].ColorSpace == pikepdf.Name.DeviceRGB  # red survives: not flattened to gray
    assert images[0].Filter == pikepdf.Name.FlateDecode  # PNG for the text-like page
    assert images[1].Filter == pikepdf.Name.DCTDecode  # JPEG for the photo


def test_checker_sees_the_hostile_fixture() -> None:
    """The independent check itself works: it flags the input that the rebuild cleans."""
    with pytest.raises(AssertionError) as info:
        assert_image_only_pdf(hostile_pdf())
    for name in ("/OpenAction", "/JavaScript", "/EmbeddedFiles", "/AcroForm", "/URI", "/Launch"):
        assert name in str(info.value)


def test_encrypted_pdf_refused() -> None:
    data = to_bytes(text_pdf(1), encryption=pikepdf.Encryption(user="secret", owner="owner"))
    with pytest.raises(Encrypted) as info:
        pdf.sanitize_pdf(data, "locked.pdf", DETECTED, ctx())
    assert info.value.reason == "encrypted"


def test_owner_password_only_pdf_is_rendered() -> None:
    # Opens without a password (restrictions only): nothing secret, so it is rebuilt.
    data = to_bytes(text_pdf(1), encryption=pikepdf.Encryption(user="", owner="owner"))
    out = pdf.sanitize_pdf(data, "restricted.pdf", DETECTED, ctx()).files[0].data
    assert_image_only_pdf(out, pages=1)


def test_too_many_pages() -> None:
    with pytest.raises(PartTooLarge):
        pdf.sanitize_pdf(to_bytes(text_pdf(5)), "big.pdf", DETECTED, ctx(max_pages=4))


def test_message_page_budget() -> None:
    c = ctx()
    c.pages.remaining = 3
    with pytest.raises(PartTooLarge):
        pdf.sanitize_pdf(to_bytes(text_pdf(4)), "big.pdf", DETECTED, c)
    assert c.pages.remaining == 3


def test_pixel_cap_refuses_large_page() -> None:
    with pytest.raises(PartTooLarge) as info:
        pdf.sanitize_pdf(to_bytes(text_pdf(1)), "a4.pdf", DETECTED, ctx(max_pixels=100_000))
    assert info.value.reason == "too_large"


def test_page_beyond_pdf_limits_refused() -> None:
    huge = to_bytes(text_pdf(1, (20_000, 600)))  # wider than a PDF page may be
    with pytest.raises(PartTooLarge):
        pdf.sanitize_pdf(huge, "huge.pdf", DETECTED, ctx())
    sliver = to_bytes(text_pdf(1, (10_001, 1)))  # Dangerzone's bad_max_width shape
    with pytest.raises(PartRefused):
        pdf.sanitize_pdf(sliver, "sliver.pdf", DETECTED, ctx())


@pytest.mark.parametrize(
    "data",
    [b"", b"%PDF-1.7\n garbage", b"not a pdf at all", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>"],
)
def test_garbage_input_refused(data: bytes) -> None:
    with pytest.raises(PartRefused) as info:
        pdf.sanitize_pdf(data, "x.pdf", DETECTED, ctx())
    assert info.value.reason in ("conversion_failed", "invalid_output")


def test_render_pdf_to_clean_pdf_for_office() -> None:
    clean = pdf.render_pdf_to_clean_pdf(to_bytes(text_pdf(2)), "議事録", ctx())
    assert clean.filename == "議事録.pdf"
    assert_image_only_pdf(clean.data, pages=2)


def test_parallel_children_keep_page_order() -> None:
    out = pdf.sanitize_pdf(to_bytes(text_pdf(13)), "o.pdf", DETECTED, ctx(processes=3, dpi=50))
    doc = assert_image_only_pdf(out.files[0].data, pages=13)
    assert len(doc.pages) == 13
    assert pdf._ranges(13, 3) == [(0, 4), (5, 8), (9, 12)]
    assert pdf._ranges(3, 8) == [(0, 2)]  # small documents: one child


# --- fault injection: a lying or hanging child ------------------------------------------------


def _fake_child(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace the renderer child by a script (fault injection)."""

    def fake(module: str) -> list[str]:
        return [sys.executable, "-I", "-c", script]

    monkeypatch.setattr(pdf.sandbox, "python_child", fake)


HEAD = (
    "import struct, sys\n"
    "H = struct.Struct('>4sBBHIIII')\n"
    "o = sys.stdout.buffer\n"
    "sys.stdin.buffer.read()\n"
    "if sys.argv[1] == 'count':\n"
    "    o.write(H.pack(b'MGF1', 2, 0, 0, 0, 0, 0, 0) + H.pack(b'MGF1', 4, 0, 0, 0, 0, 0, 0))\n"
    "    sys.exit(0)\n"
)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("o.write(b'garbage' * 100)", InvalidOutput),
        ("o.write(H.pack(b'MGF1', 1, 3, 0, 5, 10, 10, 0) + bytes(300))", InvalidOutput),  # index
        ("o.write(H.pack(b'MGF1', 1, 7, 0, 0, 10, 10, 0) + bytes(700))", InvalidOutput),  # chans
        ("o.write(H.pack(b'MGF1', 1, 3, 0, 0, 0, 10, 0))", InvalidOutput),  # zero width
        ("o.write(H.pack(b'MGF1', 1, 3, 0, 0, 60000, 60000, 0))", PartTooLarge),  # pixels
        ("o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(299))", InvalidOutput),  # short
        (  # one byte too many: becomes a bad next header
            "o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(301)"
            " + H.pack(b'MGF1', 4, 0, 0, 1, 0, 0, 0))",
            InvalidOutput,
        ),
        ("o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(300))", InvalidOutput),  # no END
        (  # END claims more pages than were sent
            "o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(300)"
            " + H.pack(b'MGF1', 4, 0, 0, 2, 0, 0, 0))",
            InvalidOutput,
        ),
        (  # a valid stream, but the child then crashes
            "o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(300)"
            " + H.pack(b'MGF1', 4, 0, 0, 1, 0, 0, 0)); o.flush(); import os; os.abort()",
            ConversionFailed,
        ),
        ("import time; time.sleep(1000)", ConversionTimeout),
        (  # within the pixel cap, but wider than a PDF page may be: the parent checks too
            "o.write(H.pack(b'MGF1', 1, 1, 0, 0, 40000, 10, 0) + bytes(400000)"
            " + H.pack(b'MGF1', 4, 0, 0, 1, 0, 0, 0))",
            PartTooLarge,
        ),
    ],
)
def test_lying_child(monkeypatch: pytest.MonkeyPatch, body: str, error: type[Exception]) -> None:
    # The count reply claims 0 pages in HEAD; patch it to 1 by rewriting the count frame.
    script = HEAD.replace("H.pack(b'MGF1', 2, 0, 0, 0,", "H.pack(b'MGF1', 2, 0, 0, 1,") + body
    _fake_child(monkeypatch, script)
    with pytest.raises(error):
        pdf.sanitize_pdf(b"%PDF-1.4", "x.pdf", DETECTED, ctx(min_seconds=2, seconds_per_page=1))


def test_valid_fake_stream_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for test_lying_child: the same harness with honest frames succeeds."""
    script = HEAD.replace("H.pack(b'MGF1', 2, 0, 0, 0,", "H.pack(b'MGF1', 2, 0, 0, 1,") + (
        "o.write(H.pack(b'MGF1', 1, 3, 0, 0, 10, 10, 0) + bytes(300)"
        " + H.pack(b'MGF1', 4, 0, 0, 1, 0, 0, 0))"
    )
    _fake_child(monkeypatch, script)
    out = pdf.sanitize_pdf(b"%PDF-1.4", "x.pdf", DETECTED, ctx()).files[0].data
    assert_image_only_pdf(out, pages=1)


def test_frame_reader_rejects_oversized_header_before_reading_body() -> None:
    reader = pdf.FrameReader(
        first=0, last=0, max_pixels=100, channels=frozenset({3}), on_page=lambda *a: None
    )
    with pytest.raises(PartTooLarge):
        reader.feed(proto.HEADER.pack(proto.MAGIC, proto.KIND_PAGE, 3, 0, 0, 11, 10, 0))


# --- big document: bounded parent memory ------------------------------------------------------

RSS_SCRIPT = """
import resource, sys
from gateway.model import Detected
from gateway.sanitize import pdf
from gateway.sanitize.base import Context, PageBudget
from gateway.settings import SanitizeSettings
data = open(sys.argv[1], 'rb').read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = SanitizeSettings()
res = pdf.sanitize_pdf(data, 'big.pdf', Detected('pdf', 'application/pdf'),
                       Context(limits=s, pages=PageBudget(1000)))
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[2], 'wb').write(res.files[0].data)
print(before // 1024, me // 1024, kids // 1024, len(res.files[0].data) // 1024)
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_300_pages_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.pdf"
    source.write_bytes(to_bytes(text_pdf(300)))
    target = tmp_path / "out.pdf"
    # A fresh interpreter, so ru_maxrss is this document's peak alone.
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(source), str(target)],
        capture_output=True,
        check=True,
        timeout=900,
    )
    before, peak, kids, out_kb = (int(v) for v in done.stdout.split())
    print(
        f"\n300 pages: parent peak RSS {peak} MiB (at start {before} MiB), "
        f"largest child {kids} MiB, output {out_kb} KiB"
    )
    assert_image_only_pdf(target.read_bytes(), pages=300)
    # 300 raw A4 pages at 150 dpi would be ~630 MiB even in gray; we keep encoded pages only.
    assert peak - before < 300


# --- corpus ----------------------------------------------------------------------------------


def _corpus_pdfs() -> list[str]:
    root = corpus_dir()
    if root is None:
        return []
    found = []
    for sub in ("adversarial/pdf", "documents/pdf"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                found.append(str(path.relative_to(root)))
    return found


@pytest.mark.corpus
@pytest.mark.timeout(240)
@pytest.mark.parametrize("rel", _corpus_pdfs())
def test_corpus_pdf(corpus: Path, rel: str) -> None:
    data = (corpus / rel).read_bytes()
    try:
        result = pdf.sanitize_pdf(data, os.path.basename(rel), DETECTED, ctx())
    except PartRefused as refused:
        assert refused.reason in {
            "encrypted",
            "too_large",
            "conversion_failed",
            "conversion_timeout",
            "invalid_output",
        }
        return
    (clean,) = result.files
    assert clean.content_type == "application/pdf"
    assert_image_only_pdf(clean.data)


def test_frame_reader_accepts_any_chunking() -> None:
    pages: list[tuple[int, int, int, int, bytes]] = []
    stream = b"".join(
        [
            proto.HEADER.pack(proto.MAGIC, proto.KIND_PAGE, 1, 0, 2, 3, 2, 0) + b"abcdef",
            proto.HEADER.pack(proto.MAGIC, proto.KIND_PAGE, 3, 0, 3, 1, 1, 0) + b"xyz",
            proto.HEADER.pack(proto.MAGIC, proto.KIND_END, 0, 0, 2, 0, 0, 0),
        ]
    )
    reader = pdf.FrameReader(
        first=2,
        last=3,
        max_pixels=100,
        channels=frozenset({1, 3}),
        on_page=lambda i, w, h, c, raw: pages.append((i, w, h, c, bytes(raw))),
    )
    for i in range(len(stream)):  # one byte at a time: every boundary is a chunk boundary
        reader.feed(stream[i : i + 1])
    assert pages == [(2, 3, 2, 1, b"abcdef"), (3, 1, 1, 3, b"xyz")]
    assert reader.ended and reader.pages == 2
