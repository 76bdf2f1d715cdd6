"""TNEF (winmail.dat): attachments and body become members; garbage fails closed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gateway.errors import ArchiveLimit, PartRefused, UnsupportedType
from gateway.mime.detect import detect
from gateway.model import Action, CleanFile, PartReport, SanitizeResult
from gateway.sanitize.base import Context, PageBudget
from gateway.sanitize.tnef import sanitize_tnef
from gateway.settings import SanitizeSettings

SEEN: list[tuple[str, bytes]] = []


def fake_recurse(
    data: bytes, name: str, declared: str, ctx: Context, index: str
) -> tuple[PartReport, tuple[CleanFile, ...]]:
    SEEN.append((name, data))
    d = detect(data, name, declared)
    if d.kind == "tnef":
        r = sanitize_tnef(data, name, d, ctx)
        return PartReport(index, name, declared, d.kind, r.action, children=r.children), r.files
    if name.endswith(".exe"):
        raise UnsupportedType("executable")
    out = CleanFile(name.rsplit(".", 1)[0] + ".txt", "text/plain", b"x")
    return PartReport(index, name, declared, d.kind, Action.CONVERTED, outputs=(out.filename,)), (
        out,
    )


def make_ctx(**limits: object) -> Context:
    return Context(
        limits=SanitizeSettings(**limits),  # type: ignore[arg-type]
        pages=PageBudget(1000),
        recurse=fake_recurse,
    )


def run(data: bytes, ctx: Context | None = None) -> SanitizeResult:
    SEEN.clear()
    return sanitize_tnef(data, "winmail.dat", detect(data, "winmail.dat"), ctx or make_ctx())


def tnef_obj(level: int, attr: int, typ: int, data: bytes) -> bytes:
    return (
        struct.pack("<BHHI", level, attr, typ, len(data))
        + data
        + struct.pack("<H", sum(data) & 0xFFFF)
    )


def make_tnef(attachments: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x78\x9f\x3e\x22" + b"\x01\x00"
    out += tnef_obj(1, 0x9006, 0x0008, b"\x00\x00\x01\x00")  # version
    for name, content in attachments:
        out += tnef_obj(2, 0x9002, 0x0006, b"\x01\x00\xff\xff\xff\xff" + bytes(8))  # rend data
        out += tnef_obj(2, 0x8010, 0x0001, name + b"\x00")  # attAttachTitle
        out += tnef_obj(2, 0x800F, 0x0006, content)  # attAttachData
    return out


def test_generated_attachments_and_refusal() -> None:
    data = make_tnef([(b"memo.txt", b"hello"), (b"evil.exe", b"MZ\x90"), (b"memo.txt", b"again")])
    assert detect(data, "winmail.dat").kind == "tnef"
    result = run(data)
    memo, evil, memo2 = result.children
    assert (memo.filename, memo.action) == ("memo.txt", Action.CONVERTED)
    assert evil.action is Action.REMOVED and evil.reasons == ("unsupported_type",)
    assert [f.filename for f in result.files] == ["memo.txt", "memo(2).txt"]
    assert SEEN[0] == ("memo.txt", b"hello")
    assert result.action is Action.CONVERTED


def test_too_many_attachments() -> None:
    data = make_tnef([(f"f{i}.txt".encode(), b"x") for i in range(12)])
    with pytest.raises(ArchiveLimit):
        run(data, make_ctx(max_archive_members=10))


def test_object_flood_refused_before_parsing() -> None:
    data = b"\x78\x9f\x3e\x22\x01\x00" + tnef_obj(1, 0x8004, 0x0001, b"") * 10_000
    with pytest.raises(ArchiveLimit):
        run(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x78\x9f\x3e\x22",
        b"\x78\x9f\x3e\x22\x01\x00" + b"\xff" * 64,
        b"\x78\x9f\x3e\x22\x01\x00\x02\x02\x90\x06\x00\xff\xff\xff\x7f",
        b"not tnef at all",
    ],
)
def test_garbage_fails_closed(data: bytes) -> None:
    try:
        result = run(data)
    except PartRefused as exc:
        assert exc.reason in ("conversion_failed", "archive_limit")
    else:
        assert result.action in (Action.REMOVED, Action.CONVERTED)


def test_depth_limit() -> None:
    ctx = make_ctx(max_depth=2)
    ctx.depth = 2
    with pytest.raises(ArchiveLimit):
        sanitize_tnef(make_tnef([(b"a.txt", b"x")]), "winmail.dat", detect(b""), ctx)


# --- corpus ---------------------------------------------------------------------------------
def corpus_file(corpus: Path, name: str) -> bytes:
    hits = list((corpus / "documents/tnef").rglob(name))
    assert hits, name
    return hits[0].read_bytes()


def test_corpus_all_tnef_files(corpus: Path) -> None:
    for p in sorted((corpus / "documents/tnef").rglob("*.tnef")):
        data = p.read_bytes()
        assert detect(data, p.name).kind == "tnef", p.name
        try:
            result = run(data)
        except PartRefused as exc:
            assert exc.reason == "conversion_failed", p.name
            continue
        assert len(result.children) == len(SEEN) or any(c.children for c in result.children)


def test_corpus_two_files(corpus: Path) -> None:
    result = run(corpus_file(corpus, "two-files.tnef"))
    assert [c.filename for c in result.children] == ["AUTHORS", "README"]


def test_corpus_rtf_body_is_a_member(corpus: Path) -> None:
    result = run(corpus_file(corpus, "rtf.tnef"))
    assert [c.filename for c in result.children] == ["body.rtf"]
    assert SEEN[0][1].startswith(b"{\\rtf")
    assert result.children[0].detected_type == "rtf"


def test_corpus_html_body_is_a_member(corpus: Path) -> None:
    result = run(corpus_file(corpus, "body.tnef"))
    assert [c.filename for c in result.children] == ["body.html"]
    assert result.children[0].detected_type == "html"


def test_corpus_non_ascii_names(corpus: Path) -> None:
    result = run(corpus_file(corpus, "umlaut.tnef"))
    assert "UmlautAnhang-äüö.txt" in [c.filename for c in result.children]


def test_corpus_embedded_message_recurses(corpus: Path) -> None:
    result = run(corpus_file(corpus, "IPM-DistList.tnef"))
    embedded = result.children[0]
    assert embedded.detected_type == "tnef"
