"""QR codes in rebuilt images and PDFs: listed disarmed, masked on request, fail closed."""

from __future__ import annotations

import io

import img2pdf
import pytest
import zxingcpp
from PIL import Image

from gateway.mime.notice import render_notice
from gateway.model import Action, PartReport
from gateway.sanitize import qr
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.registry import sanitize_part
from gateway.settings import load_settings

URL = "https://evil.example/login?id=1"


def ctx(**limits: object) -> Context:
    cfg = load_settings(sanitize=limits).sanitize
    return Context(limits=cfg, pages=PageBudget(cfg.max_pages_per_message))


def picture(
    text: str = URL, fmt: zxingcpp.BarcodeFormat = zxingcpp.BarcodeFormat.QRCode
) -> Image.Image:
    code = Image.fromarray(zxingcpp.create_barcode(text, fmt).to_image(scale=8))  # type: ignore[arg-type]
    canvas = Image.new("RGB", (900, 700), (250, 250, 240))
    canvas.paste(code.convert("RGB"), (250, 150))
    return canvas


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def pdf_of(img: Image.Image) -> bytes:
    blank = encode(Image.new("RGB", (900, 700), "white"), "JPEG")
    return img2pdf.convert([blank, encode(img, "JPEG")])  # the code on page 2


@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("qr.png", lambda: encode(picture(), "PNG"), "image/png"),
        ("qr.jpg", lambda: encode(picture(), "JPEG"), "image/jpeg"),
        ("qr.pdf", lambda: pdf_of(picture()), "application/pdf"),
    ],
)
def test_qr_listed_disarmed(name: str, data: object, declared: str) -> None:
    report, files = sanitize_part(data(), name, declared, ctx(), "2")  # type: ignore[operator]
    assert report.action is not Action.REMOVED, report
    assert "qr_listed" in report.reasons
    assert report.qr == ("hxxps://evil[.]example/login?id=1",)
    notice = render_notice("id1", [report], html_converted=False, links_disarmed=0, contact="IT")
    assert "画像内のQRコード: hxxps://evil[.]example/login?id=1" in notice
    assert "QR code in image: hxxps://evil[.]example/login?id=1" in notice
    assert URL not in notice
    # list mode leaves the delivered file as rebuilt: the code still reads (so "mask" matters).
    [out] = files
    assert [c.text for c in qr.find_codes(out.data, out.content_type, ctx())] == [URL]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_qr_masked_in_images(fmt: str) -> None:
    report, files = sanitize_part(
        encode(picture(), fmt), f"qr.{fmt.lower()}", "", ctx(qr="mask"), "1"
    )
    assert "qr_masked" in report.reasons and report.qr
    [out] = files
    assert out.content_type in ("image/png", "image/jpeg")
    assert qr.find_codes(out.data, out.content_type, ctx()) == []
    # The rest of the picture is still there (same size, not blanked).
    with Image.open(io.BytesIO(out.data)) as img:
        assert img.size == (900, 700)
        assert img.convert("RGB").getpixel((10, 10))[0] > 200


def test_barcode_and_several_codes() -> None:
    img = picture()
    bar = Image.fromarray(
        zxingcpp.create_barcode("javascript:alert(1)", zxingcpp.BarcodeFormat.Code128).to_image(
            scale=3
        )
    )  # type: ignore[arg-type]  # noqa: E501
    img.paste(bar.convert("RGB"), (20, 560))
    report, _ = sanitize_part(encode(img, "PNG"), "two.png", "", ctx(), "1")
    assert len(report.qr) == 2
    assert not any("javascript:alert" in t for t in report.qr)


def test_no_code_no_reason() -> None:
    report, _ = sanitize_part(
        encode(Image.new("RGB", (300, 200), "white"), "PNG"), "p.png", "", ctx(), "1"
    )
    assert report.qr == () and not {"qr_listed", "qr_masked"} & set(report.reasons)


def test_reader_failure_removes_the_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qr, "_CHILD", "gateway.sanitize.no_such_module")
    report, files = sanitize_part(encode(picture(), "PNG"), "qr.png", "", ctx(), "1")
    assert report.action is Action.REMOVED and report.reasons == ("conversion_failed",)
    assert files == ()


def test_notice_line_without_codes_is_unchanged() -> None:
    report = PartReport("1", "a.png", "image/png", "png", Action.CONVERTED)
    notice = render_notice("x", [report], html_converted=False, links_disarmed=0, contact="IT")
    assert "QR" not in notice
