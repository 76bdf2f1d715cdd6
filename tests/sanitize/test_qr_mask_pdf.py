"""``[sanitize] qr = "mask"`` on rebuilt PDFs (and the find-until-clean rule for images):
codes are painted over only on their pages, nothing of the old page image survives, a
lying page renderer is caught, and a file with too many codes is removed, not half-masked."""

from __future__ import annotations

import io

import img2pdf
import pikepdf
import pytest
import zxingcpp
from PIL import Image

from gateway.errors import ConversionFailed
from gateway.model import Action
from gateway.sanitize import qr
from gateway.sanitize.registry import sanitize_part
from tests.sanitize.test_qr import URL, ctx, encode, pdf_of, picture


def grid(count: int, size: tuple[int, int] = (1700, 1700)) -> Image.Image:
    """``count`` distinct QR codes on one canvas."""
    canvas = Image.new("RGB", size, "white")
    step, per_row = 170, size[0] // 170
    for n in range(count):
        code = zxingcpp.create_barcode(f"https://e{n}.example/", zxingcpp.BarcodeFormat.QRCode)
        tile = Image.fromarray(code.to_image(scale=4)).convert("RGB")  # type: ignore[arg-type]
        canvas.paste(tile, ((n % per_row) * step + 20, (n // per_row) * step + 20))
    return canvas


def images_per_page(data: bytes) -> list[int]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [len(list(p.get_images())) for p in pdf.pages]


def image_objects(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return sum(
            1
            for o in pdf.objects
            if isinstance(o, pikepdf.Stream) and o.get("/Subtype") == "/Image"
        )


def test_pdf_page_code_listed_and_masked_other_pages_untouched() -> None:
    _, [before] = sanitize_part(pdf_of(picture()), "qr.pdf", "application/pdf", ctx(), "1")
    report, files = sanitize_part(
        pdf_of(picture()), "qr.pdf", "application/pdf", ctx(qr="mask"), "1"
    )
    assert report.action is not Action.REMOVED, report
    assert "qr_masked" in report.reasons
    assert report.qr == ("hxxps://evil[.]example/login?id=1",)
    [out] = files
    assert out.content_type == "application/pdf" and out.data.startswith(b"%PDF-")
    assert qr.find_codes(out.data, out.content_type, ctx()) == []
    assert images_per_page(out.data) == [1, 1]  # still one image per page, nothing else
    assert image_objects(out.data) == 2  # the unmasked page image is not kept in the file
    # Page 1 (no code) is byte-for-byte the rebuilt page; page 2 is new.
    with pikepdf.open(io.BytesIO(before.data)) as a, pikepdf.open(io.BytesIO(out.data)) as b:
        img_a = [list(p.get_images().values())[0].read_raw_bytes() for p in a.pages]
        img_b = [list(p.get_images().values())[0].read_raw_bytes() for p in b.pages]
        assert img_a[0] == img_b[0] and img_a[1] != img_b[1]
        assert [list(map(float, p.mediabox)) for p in a.pages] == [
            list(map(float, p.mediabox)) for p in b.pages
        ]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_images_masked_and_decoded_afterwards(fmt: str) -> None:
    report, [out] = sanitize_part(
        encode(picture(), fmt), f"q.{fmt.lower()}", "", ctx(qr="mask"), "1"
    )
    assert "qr_masked" in report.reasons
    assert qr.find_codes(out.data, out.content_type, ctx()) == []


def test_javascript_and_bidi_code_texts_are_disarmed_and_masked() -> None:
    img = picture("javascript:alert(document.cookie)\u202etxt.exe")
    report, [out] = sanitize_part(pdf_of(img), "qr.pdf", "application/pdf", ctx(qr="mask"), "1")
    assert report.qr and not any("javascript:alert" in t for t in report.qr)
    assert not any("\u202e" in t for t in report.qr)
    assert qr.find_codes(out.data, out.content_type, ctx()) == []


def test_more_codes_than_one_round_are_all_masked() -> None:
    # 30 codes: more than MAX_CODES (20) found at once; the second round gets the rest.
    blank = encode(Image.new("RGB", (400, 300), "white"), "JPEG")
    data = img2pdf.convert([blank, encode(grid(30), "PNG")])
    report, files = sanitize_part(data, "many.pdf", "application/pdf", ctx(qr="mask"), "1")
    assert report.action is not Action.REMOVED, report
    [out] = files
    assert qr.find_codes(out.data, out.content_type, ctx()) == []
    assert len(report.qr) == qr.MAX_CODES  # the notice lists a bounded number


def test_too_many_codes_remove_the_part(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of codes: more than the masking rounds take. Removed, never half-masked.
    monkeypatch.setattr(qr, "_MASK_ROUNDS", 1)
    data = img2pdf.convert([encode(grid(30), "PNG")])
    report, files = sanitize_part(data, "many.pdf", "application/pdf", ctx(qr="mask"), "1")
    assert report.action is Action.REMOVED and report.reasons == ("qr_mask_incomplete",)
    assert files == ()


def test_list_mode_still_lists_at_most_max_codes() -> None:
    data = img2pdf.convert([encode(grid(100), "PNG")])
    report, [out] = sanitize_part(data, "many.pdf", "application/pdf", ctx(), "1")
    assert "qr_listed" in report.reasons and len(report.qr) == qr.MAX_CODES
    assert out.data.startswith(b"%PDF-")


def _rebuilt() -> bytes:
    _, [out] = sanitize_part(pdf_of(picture()), "qr.pdf", "application/pdf", ctx(), "1")
    return out.data


def test_a_lying_page_renderer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _rebuilt()
    codes = qr.find_codes(data, "application/pdf", ctx())
    real_run = qr.sandbox.run

    def liar(args: list[str], **kw: object) -> object:
        if "pages" in args:  # a compromised child answers for another page and size
            sink = kw["sink"]
            assert callable(sink)
            sink(b'{"page": 0, "width": 10, "height": 10}\n' + b"\0" * 300)
            return qr.sandbox.RunResult(0, b"", b"", 0.0, None)
        return real_run(args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(qr.sandbox, "run", liar)
    with pytest.raises(ConversionFailed):
        qr._mask_pdf(data, codes, ctx())


def test_a_short_page_from_the_renderer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _rebuilt()
    codes = qr.find_codes(data, "application/pdf", ctx())
    real_run = qr.sandbox.run

    def short(args: list[str], **kw: object) -> object:
        if "pages" in args:
            spec = __import__("json").loads(args[-1])
            index, w, h = spec[0]
            sink = kw["sink"]
            assert callable(sink)
            sink(f'{{"page": {index}, "width": {w}, "height": {h}}}\n'.encode() + b"\0" * 99)
            return qr.sandbox.RunResult(0, b"", b"", 0.0, None)
        return real_run(args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(qr.sandbox, "run", short)
    with pytest.raises(ConversionFailed):
        qr._mask_pdf(data, codes, ctx())


def test_code_on_a_page_that_does_not_exist_is_refused() -> None:
    data = _rebuilt()
    bogus = [qr.Code(page=9, text=URL, format="QRCode", box=(0, 0, 10, 10))]
    with pytest.raises(ConversionFailed):
        qr._mask_pdf(data, bogus, ctx())


def test_a_pdf_that_is_not_one_image_per_page_is_refused() -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    buf = io.BytesIO()
    pdf.save(buf)
    with pytest.raises(ConversionFailed):
        qr._mask_pdf(buf.getvalue(), [qr.Code(1, URL, "QRCode", (0, 0, 5, 5))], ctx())


def test_a_page_over_the_pixel_limit_is_not_rendered_again() -> None:
    data = _rebuilt()
    codes = qr.find_codes(data, "application/pdf", ctx())
    with pytest.raises(ConversionFailed):
        qr._mask_pdf(data, codes, ctx(max_pixels=1000))


def _odt_with(png: bytes) -> bytes:
    content = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.3">
<office:body><office:text><text:p>請求書のご案内</text:p>
<text:p><draw:frame draw:name="qr" svg:width="6cm" svg:height="6cm" text:anchor-type="paragraph">
<draw:image xlink:href="Pictures/qr.png" xlink:type="simple" xlink:show="embed"/>
</draw:frame></text:p></office:text></office:body></office:document-content>"""
    manifest = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
 manifest:version="1.3">
<manifest:file-entry manifest:full-path="/"
 manifest:media-type="application/vnd.oasis.opendocument.text"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
<manifest:file-entry manifest:full-path="Pictures/qr.png" manifest:media-type="image/png"/>
</manifest:manifest>"""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        z.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        z.writestr("Pictures/qr.png", png, zipfile.ZIP_STORED)
    return buf.getvalue()


def test_office_document_page_code_masked() -> None:
    # The Office path ends in the same rebuilt PDF: its pages are masked the same way.
    code = zxingcpp.create_barcode(URL, zxingcpp.BarcodeFormat.QRCode).to_image(scale=8)
    odt = _odt_with(encode(Image.fromarray(code).convert("RGB"), "PNG"))  # type: ignore[arg-type]
    from dataclasses import replace

    from gateway.sanitize.office import OfficePool

    with OfficePool(0) as pool:
        listed, [plain] = sanitize_part(odt, "案内.odt", "", replace(ctx(), office=pool), "1")
        assert "qr_listed" in listed.reasons, listed
        assert [c.text for c in qr.find_codes(plain.data, "application/pdf", ctx())] == [URL]
        masking = replace(ctx(qr="mask"), office=pool)
        report, [out] = sanitize_part(odt, "案内.odt", "", masking, "1")
    assert "qr_masked" in report.reasons and out.content_type == "application/pdf"
    assert qr.find_codes(out.data, out.content_type, ctx()) == []
