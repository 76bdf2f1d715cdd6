"""Image re-encoding with the real decoder child, generated fixtures and the corpus."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import magic
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from gateway.errors import ConversionFailed, PartRefused, PartTooLarge
from gateway.model import Action, Detected
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.image import sanitize_image
from gateway.sanitize.names import clean_name
from gateway.settings import SanitizeSettings
from tests.conftest import corpus_dir

pytestmark = pytest.mark.timeout(120)

PNG = Detected(kind="png", mime="image/png")
JPEG = Detected(kind="jpeg", mime="image/jpeg")


def ctx(**limits: object) -> Context:
    settings = SanitizeSettings(**limits)  # type: ignore[arg-type]
    return Context(limits=settings, pages=PageBudget(settings.max_pages_per_message))


def encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)  # type: ignore[arg-type]
    return buf.getvalue()


def gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    g = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (g, g.transpose(Image.Transpose.FLIP_LEFT_RIGHT), g.rotate(90)))


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x8825] = {1: "N", 2: (35.0, 41.0, 22.0), 3: "E", 4: (139.0, 41.0, 30.0)}  # GPS IFD
    return exif


def open_output(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_no_metadata(image: Image.Image) -> None:
    assert len(image.getexif()) == 0
    for key in ("exif", "icc_profile", "XML:com.adobe.xmp", "xmp", "comment", "dpi"):
        assert key not in image.info, key
    assert not getattr(image, "text", {})  # PNG tEXt/iTXt/zTXt chunks


# --- generated fixtures ----------------------------------------------------------------------


def test_jpeg_metadata_removed() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(gradient(), "JPEG", exif=exif_with_gps(), icc_profile=icc, comment=b"secret")
    source = open_output(data)
    assert source.getexif() and "icc_profile" in source.info  # the fixture carries metadata
    result = sanitize_image(data, "IMG_0001.JPG", JPEG, ctx())
    assert result.action is Action.CONVERTED
    (clean,) = result.files
    assert clean.filename == "IMG_0001.jpg" and clean.content_type == "image/jpeg"
    out = open_output(clean.data)
    assert out.format == "JPEG" and out.size == (64, 48)
    assert_no_metadata(out)
    assert b"CameraMaker" not in clean.data and b"secret" not in clean.data


def test_png_text_chunks_and_exif_removed() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret comment")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    data = encode(gradient(), "PNG", pnginfo=info, exif=exif_with_gps())
    clean = sanitize_image(data, "scan.png", PNG, ctx()).files[0]
    assert clean.filename == "scan.png" and clean.content_type == "image/png"
    out = open_output(clean.data)
    assert_no_metadata(out)
    assert b"secret" not in clean.data and b"eXIf" not in clean.data


def test_exif_orientation_applied() -> None:
    data = encode(gradient((80, 40)), "JPEG", exif=exif_with_gps(orientation=6))
    out = open_output(sanitize_image(data, "p.jpg", JPEG, ctx()).files[0].data)
    assert out.size == (40, 80)  # rotated upright, then the tag is gone
    assert_no_metadata(out)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), c) for c in ("red", "green", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    result = sanitize_image(data, "anim.gif", Detected("gif", "image/gif"), ctx())
    assert result.files[0].filename == "anim.png"
    assert result.files[0].content_type == "image/png"
    assert "first of 3 frames" in result.detail
    assert open_output(result.files[0].data).size == (20, 10)


@pytest.mark.parametrize(
    ("fmt", "kind", "mime", "mode"),
    [
        ("BMP", "bmp", "image/bmp", "RGB"),
        ("TIFF", "tiff", "image/tiff", "RGB"),
        ("WEBP", "webp", "image/webp", "RGB"),
        ("PNG", "png", "image/png", "RGBA"),
        ("PNG", "png", "image/png", "P"),
        ("PNG", "png", "image/png", "1"),
        ("PNG", "png", "image/png", "I;16"),
        ("PNG", "png", "image/png", "LA"),
        ("TIFF", "tiff", "image/tiff", "CMYK"),
        ("JPEG", "jpeg", "image/jpeg", "L"),
        ("JPEG", "jpeg", "image/jpeg", "CMYK"),
    ],
)
def test_formats_and_modes(fmt: str, kind: str, mime: str, mode: str) -> None:
    data = encode(gradient().convert(mode), fmt)
    clean = sanitize_image(data, f"x.{kind}", Detected(kind, mime), ctx()).files[0]
    out = open_output(clean.data)
    assert out.size == (64, 48)
    assert out.mode in ("L", "RGB", "RGBA")
    assert magic.from_buffer(clean.data, mime=True) == clean.content_type
    expected = "image/jpeg" if kind == "jpeg" else "image/png"
    assert clean.content_type == expected
    if mode in ("RGBA", "LA"):
        assert out.mode == "RGBA"  # transparency kept (PNG output)
    if mode == "I;16":
        assert out.getextrema() == (0, 255)  # scaled to 8 bits, not clipped


def test_multipage_tiff_first_page() -> None:
    pages = [gradient(), gradient().rotate(180)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    result = sanitize_image(data, "fax.tiff", Detected("tiff", "image/tiff"), ctx())
    assert "first of 2 frames" in result.detail


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's header)."""
    real = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    new = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return real[:8] + new + real[8 + 25 :]


def test_decompression_bomb_header_refused() -> None:
    with pytest.raises(PartTooLarge) as info:
        sanitize_image(_png_claiming(100_000, 100_000), "bomb.png", PNG, ctx())
    assert info.value.reason == "too_large"


def test_real_bomb_refused_by_pixel_cap() -> None:
    data = encode(Image.new("L", (3000, 3000)), "PNG")  # 9 Mpx of zeros, a few KiB
    assert len(data) < 100_000
    with pytest.raises(PartTooLarge):
        sanitize_image(data, "bomb.png", PNG, ctx(max_pixels=1_000_000))
    # between the cap and Pillow's 2× warning band: refused too
    with pytest.raises(PartTooLarge):
        sanitize_image(data, "bomb.png", PNG, ctx(max_pixels=6_000_000))


NOISE = Image.effect_noise((200, 200), 100).convert("RGB")
NOISE_PNG = encode(NOISE, "PNG")
NOISE_JPEG = encode(NOISE, "JPEG")


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"", PNG),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, PNG),
        (NOISE_PNG[: len(NOISE_PNG) // 2], PNG),  # truncated
        (NOISE_JPEG[: len(NOISE_JPEG) // 2], JPEG),  # truncated
        (encode(gradient(), "JPEG"), PNG),  # declared PNG: only the PNG decoder may run
        (encode(gradient(), "ICO"), Detected("unknown", "image/vnd.microsoft.icon")),
    ],
)
def test_broken_input_refused(data: bytes, detected: Detected) -> None:
    with pytest.raises(ConversionFailed) as info:
        sanitize_image(data, "broken", detected, ctx())
    assert info.value.reason == "conversion_failed"


def test_clean_name_rules() -> None:
    assert clean_name("請求書.docm", "pdf") == "請求書.pdf"
    assert clean_name("../../etc/passwd", "png") == "passwd.png"
    assert clean_name("C:\\Users\\x\\写真.JPG", "jpg") == "写真.jpg"
    assert clean_name("invoice\u202egpj.exe", "pdf") == "invoicegpj.pdf"
    assert clean_name("a\x00b\r\nc.txt", "txt") == "abc.txt"
    assert clean_name("", "png") == "attachment.png"
    assert clean_name("...", "png") == "attachment.png"
    assert clean_name(".hidden", "png") == "hidden.png"
    assert clean_name('a<b>:"c|?*.pdf', "pdf") == "a_b___c___.pdf"
    assert len(clean_name("長" * 500 + ".doc", "pdf")) == 104


# --- corpus ----------------------------------------------------------------------------------


def _corpus_images(group: str) -> list[str]:
    root = corpus_dir()
    if root is None:
        return []
    return sorted(str(p.relative_to(root)) for p in (root / group).rglob("*") if p.is_file())


def _detected(data: bytes) -> Detected:
    mime = magic.from_buffer(data, mime=True)
    return Detected(kind=mime.rpartition("/")[2], mime=mime)


@pytest.mark.corpus
@pytest.mark.parametrize("rel", _corpus_images("adversarial/images"))
def test_corpus_adversarial_images(corpus: Path, rel: str) -> None:
    data = (corpus / rel).read_bytes()
    try:
        result = sanitize_image(data, Path(rel).name, _detected(data), ctx())
    except PartRefused as refused:
        assert refused.reason in {"too_large", "conversion_failed", "invalid_output"}
        if Path(rel).name == "decompression_bomb.gif":
            assert refused.reason == "too_large"
        return
    assert Path(rel).name != "decompression_bomb.gif"
    clean = result.files[0]
    assert_no_metadata(open_output(clean.data))
    assert magic.from_buffer(clean.data, mime=True) == clean.content_type


@pytest.mark.corpus
@pytest.mark.parametrize("rel", _corpus_images("documents/images"))
def test_corpus_document_images(corpus: Path, rel: str) -> None:
    data = (corpus / rel).read_bytes()
    detected = _detected(data)
    if detected.kind not in ("png", "jpeg", "gif", "bmp", "tiff", "webp"):
        pytest.skip(f"{detected.mime} is not routed to the image sanitizer")
    result = sanitize_image(data, Path(rel).name, detected, ctx())
    clean = result.files[0]
    out = open_output(clean.data)
    assert_no_metadata(out)
    assert magic.from_buffer(clean.data, mime=True) == clean.content_type
    if "orientation__portrait" in rel:
        assert out.height > out.width
