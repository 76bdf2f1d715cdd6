"""gateway/sanitize/registry.py: dispatch by detected kind, the output check, fail-closed."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gateway.errors import ConverterBusy
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize import archive, eml, image, office, pdf, text, tnef
from gateway.sanitize.base import ALLOWED_OUTPUT_TYPES, Context, PageBudget, Sanitizer
from gateway.sanitize.msg import sanitize_msg
from gateway.sanitize.registry import REGISTRY, sanitize_part
from gateway.settings import SanitizeSettings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def ctx() -> Context:
    limits = SanitizeSettings()
    return Context(limits=limits, pages=PageBudget(limits.max_pages_per_message))


def returning(*files: CleanFile) -> Sanitizer:
    def sanitizer(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        return SanitizeResult(files=files, action=Action.CONVERTED)

    return sanitizer


def with_text(sanitizer: Sanitizer) -> Mapping[str, Sanitizer]:
    """The real registry with the plain-text kind replaced: real detection, real checks."""
    return {**REGISTRY, "text": sanitizer}


@pytest.mark.parametrize(
    ("kinds", "sanitizer"),
    [
        (("text", "csv"), text.sanitize_text),
        (("html",), text.sanitize_html_attachment),
        (("pdf",), pdf.sanitize_pdf),
        (("docx", "xlsm", "ppt", "odt", "rtf"), office.sanitize_office),
        (("png", "jpeg", "gif", "bmp", "tiff", "webp"), image.sanitize_image),
        (("zip", "tar", "gzip", "bzip2", "xz", "7z"), archive.sanitize_archive),
        (("tnef",), tnef.sanitize_tnef),
        (("eml",), eml.sanitize_eml),
        (("msg",), sanitize_msg),
    ],
)
def test_each_kind_goes_to_its_sanitizer(kinds: tuple[str, ...], sanitizer: Sanitizer) -> None:
    for kind in kinds:
        assert REGISTRY[kind] is sanitizer, kind


def test_executables_scripts_and_unknown_content_have_no_sanitizer() -> None:
    for kind in ("exe", "elf", "js", "vbs", "lnk", "iso", "unknown"):
        assert kind not in REGISTRY, kind
    report, files = sanitize_part(b"MZ\x90\x00" + b"\x00" * 200, "a.exe", "", ctx(), "2")
    assert files == ()
    assert report.action is Action.REMOVED and report.reasons == ("unsupported_type",)


def test_dispatch_is_by_detected_content_not_by_name_or_declared_type() -> None:
    seen: list[str] = []

    def spy(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        seen.append(detected.kind)
        return SanitizeResult(files=(CleanFile("x.txt", "text/plain", data),), action=Action.KEPT)

    report, files = sanitize_part(
        "見積もり\n".encode(), "notes.txt", "text/plain", ctx(), "2", registry=with_text(spy)
    )
    assert seen == ["text"]
    assert report.action is Action.KEPT and files[0].data == "見積もり\n".encode()


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (CleanFile("x.html", "text/html", b"<p>hi</p>"), "a type not allowed out"),
        (CleanFile("x.exe", "application/octet-stream", b"MZ"), "a type not allowed out"),
        (CleanFile("x.pdf", "application/pdf", b"MZ\x90\x00 not a pdf"), "PDF without %PDF-"),
        (CleanFile("x.png", "image/png", b"\xff\xd8\xff jpeg bytes"), "PNG without its magic"),
        (CleanFile("x.jpg", "image/jpeg", PNG), "JPEG without its magic"),
        (CleanFile("x.txt", "text/plain", b"\xff\xfe\x00bad"), "text that is not UTF-8"),
    ],
)
def test_output_check_removes_a_part_whose_sanitizer_returns_the_wrong_thing(
    output: CleanFile, why: str
) -> None:
    report, files = sanitize_part(
        b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(returning(output))
    )
    assert files == (), why
    assert report.action is Action.REMOVED, why
    assert report.reasons == ("invalid_output",), why
    assert report.outputs == ()


def test_output_check_lets_every_allowed_type_through() -> None:
    good = (
        CleanFile("a.pdf", "application/pdf", b"%PDF-1.7\n"),
        CleanFile("a.png", "image/png", PNG),
        CleanFile("a.jpg", "image/jpeg", b"\xff\xd8\xff\xe0"),
        CleanFile("a.txt", "text/plain", "本文".encode()),
        CleanFile("a.csv", "text/csv", b"a,b\n"),
    )
    assert {f.content_type for f in good} == ALLOWED_OUTPUT_TYPES
    report, files = sanitize_part(
        b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(returning(*good))
    )
    assert files == good
    assert report.action is Action.CONVERTED
    assert report.outputs == ("a.pdf", "a.png", "a.jpg", "a.txt", "a.csv")


def test_one_bad_output_among_good_ones_removes_the_whole_part() -> None:
    outputs = (CleanFile("a.txt", "text/plain", b"ok"), CleanFile("b.bin", "x/y", b"?"))
    report, files = sanitize_part(
        b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(returning(*outputs))
    )
    assert files == () and report.reasons == ("invalid_output",)


def test_a_sanitizer_bug_removes_the_part_and_a_transient_error_propagates() -> None:
    def crash(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        raise KeyError("bug")

    report, files = sanitize_part(
        b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(crash)
    )
    assert files == () and report.reasons == ("internal_error",)

    def busy(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
        raise ConverterBusy("every converter busy")

    with pytest.raises(ConverterBusy):  # the whole message is retried, nothing removed
        sanitize_part(b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(busy))


def test_nothing_returned_is_a_removal() -> None:
    report, files = sanitize_part(
        b"hello\n", "a.txt", "text/plain", ctx(), "2", registry=with_text(returning())
    )
    assert files == ()
    assert report.action is Action.REMOVED and report.reasons == ("empty_result",)


def test_report_describes_the_original_part() -> None:
    data = b"hello\n"
    report, _ = sanitize_part(data, "a.txt", "text/plain", ctx(), "3.1")
    assert report.index == "3.1" and report.filename == "a.txt"
    assert report.declared_type == "text/plain" and report.detected_type == "text"
    assert report.size == len(data)
    assert report.sha256 == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
