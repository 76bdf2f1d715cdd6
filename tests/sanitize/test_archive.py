"""Archive sanitizer: names, limits, bombs, encryption, tar specials, gzip, 7z.

The member dispatcher is a small stand-in for the registry: it detects the member with the
real detector, recurses into nested archives with the real archive sanitizer, refuses
executables and turns everything else into a tiny text file naming the member.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from gateway.errors import ArchiveLimit, Encrypted, PartRefused, UnsupportedType
from gateway.mime.detect import detect
from gateway.model import Action, CleanFile, PartReport, SanitizeResult
from gateway.sanitize.archive import sanitize_archive
from gateway.sanitize.archive.names import decode_legacy_name
from gateway.sanitize.base import Context, PageBudget
from gateway.settings import SanitizeSettings

ARCHIVE_KINDS = ("zip", "tar", "gzip", "bzip2", "xz", "7z", "rar")
SEEN: list[tuple[str, bytes]] = []


def fake_recurse(
    data: bytes, name: str, declared: str, ctx: Context, index: str
) -> tuple[PartReport, tuple[CleanFile, ...]]:
    SEEN.append((name, data))
    d = detect(data, name, declared)
    if d.kind in ARCHIVE_KINDS:
        try:
            r = sanitize_archive(data, name, d, ctx)
        except PartRefused as exc:
            return PartReport(index, name, declared, d.kind, Action.REMOVED, (exc.reason,)), ()
        rep = PartReport(index, name, declared, d.kind, r.action, r.reasons, children=r.children)
        return rep, r.files
    if name == "evil.exe" or d.kind == "executable":
        raise UnsupportedType("executable")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    out = CleanFile(f"{stem}.txt", "text/plain", f"{name}:{len(data)}".encode())
    return PartReport(index, name, declared, d.kind, Action.CONVERTED, outputs=(out.filename,)), (
        out,
    )


def make_ctx(depth: int = 0, **limits: object) -> Context:
    return Context(
        limits=SanitizeSettings(**limits),  # type: ignore[arg-type]
        pages=PageBudget(1000),
        depth=depth,
        recurse=fake_recurse,
    )


def run(data: bytes, filename: str = "a.zip", ctx: Context | None = None) -> SanitizeResult:
    SEEN.clear()
    return sanitize_archive(data, filename, detect(data, filename), ctx or make_ctx())


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def zip_raw_names(members: list[tuple[bytes, bytes]], extra: bytes = b"") -> bytes:
    """A ZIP whose names are the given raw bytes, without the UTF-8 flag (as Windows'
    Explorer writes them): written with ASCII placeholders of equal length, then patched."""
    placeholders = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, (raw, content) in enumerate(members):
            ph = f"#{i:03d}".ljust(len(raw), "~")
            assert len(ph) == len(raw)
            placeholders.append((ph.encode(), raw))
            info = zipfile.ZipInfo(ph)
            info.extra = extra
            zf.writestr(info, content)
    data = buf.getvalue()
    for ph, raw in placeholders:
        assert data.count(ph) == 2  # local header + central directory
        data = data.replace(ph, raw)
    return data


def names(result: SanitizeResult) -> list[str]:
    return [c.filename for c in result.children]


def outputs(result: SanitizeResult) -> list[str]:
    return [f.filename for f in result.files]


def all_reasons(reports: tuple[PartReport, ...]) -> set[str]:
    out: set[str] = set()
    for r in reports:
        out.update(r.reasons)
        out |= all_reasons(r.children)
    return out


# --- names ------------------------------------------------------------------------------
def test_cp932_names_with_backslash_trail_byte() -> None:
    members = [
        ("ソフト/能力表.xlsx".encode("cp932"), b"one"),
        ("表.txt".encode("cp932"), b"two"),
        ("資料\\ソ.txt".encode("cp932"), b"three"),  # Windows separator
    ]
    assert b"\x83\x5c" in members[0][0] and b"\x95\x5c" in members[1][0]
    data = zip_raw_names(members)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert not any(i.flag_bits & 0x800 for i in zf.infolist())
    result = run(data)
    assert names(result) == ["ソフト/能力表.xlsx", "表.txt", "資料/ソ.txt"]
    assert outputs(result) == ["ソフト_能力表.txt", "表.txt", "資料_ソ.txt"]
    # the member sanitizer sees the base name only
    assert [n for n, _ in SEEN] == ["能力表.xlsx", "表.txt", "ソ.txt"]
    assert result.action is Action.CONVERTED


def test_utf8_flag_names() -> None:
    data = zip_bytes({"報告書/見積書.txt": b"x", "ⅰⅱ①.txt": b"y"})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(i.flag_bits & 0x800 for i in zf.infolist())
    result = run(data)
    assert names(result) == ["報告書/見積書.txt", "ⅰⅱ①.txt"]
    assert outputs(result) == ["報告書_見積書.txt", "ⅰⅱ①.txt"]


def test_infozip_unicode_path_extra_field() -> None:
    raw = "表.txt".encode("cp932")
    utf8 = "ユニコード.txt".encode()
    extra = struct.pack("<HHBI", 0x7075, 5 + len(utf8), 1, zlib.crc32(raw)) + utf8
    assert names(run(zip_raw_names([(raw, b"content")], extra))) == ["ユニコード.txt"]
    # a stale field (CRC of another name) is ignored
    stale = struct.pack("<HHBI", 0x7075, 5 + len(utf8), 1, zlib.crc32(b"other")) + utf8
    assert names(run(zip_raw_names([(raw, b"content")], stale))) == ["表.txt"]


def test_legacy_name_fallbacks() -> None:
    assert decode_legacy_name("能.txt".encode("cp932")) == "能.txt"
    assert decode_legacy_name(b"mac.txt") == "mac.txt"
    assert decode_legacy_name("日本".encode()) == "日本"  # UTF-8 without the flag (macOS)
    assert decode_legacy_name(b"\x81\x20z") == b"\x81\x20z".decode("cp437")  # bad CP932


def test_corpus_cp932_and_utf8_zips(corpus: Path) -> None:
    lib = corpus / "adversarial/archives/libarchive"
    for name in ("zip_filename_cp932.zip", "zip_filename_utf8_jp.zip"):
        result = run((lib / name).read_bytes(), name)
        assert "表だよ/一覧表.txt" in names(result)
        assert "表だよ_一覧表.txt" in outputs(result)


def test_traversal_and_absolute_names_removed() -> None:
    data = zip_bytes(
        {
            "../evil.txt": b"a",
            "/etc/passwd": b"b",
            "C:/Windows/win.ini": b"c",
            "ok/../../up.txt": b"d",
            "good.txt": b"e",
        }
    )
    result = run(data)
    by_name = {c.filename: c for c in result.children}
    for bad in ("../evil.txt", "/etc/passwd", "C:/Windows/win.ini", "ok/../../up.txt"):
        assert by_name[bad].action is Action.REMOVED
        assert by_name[bad].reasons == ("unsafe_path",)
    assert by_name["good.txt"].action is Action.CONVERTED
    assert outputs(result) == ["good.txt"]
    assert [n for n, _ in SEEN] == ["good.txt"]


def test_duplicate_output_names_made_unique() -> None:
    result = run(zip_bytes({"a/x.txt": b"1", "a_x.txt": b"2", "b/a_x.txt": b"3"}))
    assert outputs(result) == ["a_x.txt", "a_x(2).txt", "b_a_x.txt"]


def test_mac_metadata_skipped() -> None:
    result = run(zip_bytes({"doc.txt": b"1", "__MACOSX/._doc.txt": b"\0\5\26\7", ".DS_Store": b""}))
    assert names(result) == ["doc.txt"]


# --- members refused, methods ---------------------------------------------------------------
def test_member_refused_by_dispatcher_keeps_others() -> None:
    result = run(zip_bytes({"evil.exe": b"MZ\x90\x00", "note.txt": b"hello"}))
    evil, note = result.children
    assert evil.action is Action.REMOVED and evil.reasons == ("unsupported_type",)
    assert note.action is Action.CONVERTED
    assert outputs(result) == ["note.txt"]
    assert result.action is Action.CONVERTED


def test_all_members_refused_gives_removed() -> None:
    result = run(zip_bytes({"evil.exe": b"MZ"}))
    assert result.action is Action.REMOVED
    assert result.files == ()
    assert "unsupported_type" in result.reasons


def test_empty_zip() -> None:
    result = run(zip_bytes({}))
    assert result.action is Action.REMOVED and result.reasons == ("empty_archive",)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_zip_methods(method: int) -> None:
    result = run(zip_bytes({"a.txt": b"hello " * 1000}, method))
    assert outputs(result) == ["a.txt"]
    assert SEEN[0][1] == b"hello " * 1000


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_DEFLATED])
def test_member_bomb_each_method(method: int) -> None:
    data = zip_bytes({"zeros.txt": bytes(30 * 1024 * 1024)}, method)
    with pytest.raises(ArchiveLimit):
        run(data, ctx=make_ctx(max_unpacked_bytes=5 * 1024 * 1024))


def test_corrupt_member_removed_not_crash() -> None:
    data = bytearray(zip_bytes({"a.txt": b"A" * 5000, "b.txt": b"B" * 10}))
    i = data.find(b"a.txt") + 5 + 10  # inside a.txt's compressed data
    data[i] ^= 0xFF
    result = run(bytes(data))
    a, b = result.children
    assert a.action is Action.REMOVED and a.reasons == ("conversion_failed",)
    assert b.action is Action.CONVERTED


def test_corpus_zip_methods(corpus: Path) -> None:
    d = corpus / "adversarial/archives/corkami-zip"
    for name in ("deflate64.zip", "bz2.zip", "lzma.zip", "store.zip", "zip64.zip"):
        result = run((d / name).read_bytes(), name)
        assert result.action is Action.CONVERTED, name
    for name in ("implode.zip", "PPMd.zip", "wavpack.zip", "shrunk.zip"):
        result = run((d / name).read_bytes(), name)
        assert result.action is Action.REMOVED, name
        assert all(c.reasons == ("unsupported_type",) for c in result.children)


# --- limits and bombs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gigabyte_of_zeros_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("zeros.bin", "w", force_zip64=True) as fh:
            block = bytes(1024 * 1024)
            for _ in range(1024):
                fh.write(block)
    return buf.getvalue()


def test_zip_bomb_one_gigabyte(gigabyte_of_zeros_zip: bytes) -> None:
    assert len(gigabyte_of_zeros_zip) < 8 * 1024 * 1024
    with pytest.raises(ArchiveLimit):
        run(gigabyte_of_zeros_zip)


def test_ratio_limit_without_size_limit() -> None:
    data = zip_bytes({"zeros.bin": bytes(20 * 1024 * 1024)})
    with pytest.raises(ArchiveLimit):  # ~20 KiB packed, x100 = 2 MiB allowed
        run(data)
    assert SEEN == []  # nothing reached a member sanitizer


def test_small_text_zip_under_ratio_floor() -> None:
    result = run(zip_bytes({"t.txt": b"a" * 500_000}))  # ratio ~1000 but < 1 MiB
    assert result.action is Action.CONVERTED


def test_overlapping_entries_bomb() -> None:
    """Fifield-style: many central directory entries sharing one local file."""
    data = zip_bytes({"k": bytes(1024 * 1024)})
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack_from("<II", data, eocd + 12)
    central = data[cd_off : cd_off + cd_size]
    copies = 50
    new_cd = central * copies
    eocd_rec = bytearray(data[eocd:])
    struct.pack_into("<HHII", eocd_rec, 8, copies, copies, len(new_cd), cd_off)
    bomb = data[:cd_off] + new_cd + bytes(eocd_rec)
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        assert len(zf.infolist()) == copies
    with pytest.raises(ArchiveLimit):
        run(bomb)


def test_too_many_members() -> None:
    data = zip_bytes({f"f{i}.txt": b"x" for i in range(51)})
    with pytest.raises(ArchiveLimit):
        run(data, ctx=make_ctx(max_archive_members=50))
    ok = run(
        zip_bytes({f"f{i}.txt": b"x" for i in range(50)}), ctx=make_ctx(max_archive_members=50)
    )
    assert len(ok.files) == 50


def test_depth_limit_at_entry() -> None:
    with pytest.raises(ArchiveLimit):
        run(zip_bytes({"a.txt": b"x"}), ctx=make_ctx(depth=3, max_archive_depth=3))


def test_nested_zips_stop_at_depth() -> None:
    data = zip_bytes({"leaf.txt": b"leaf"})
    for level in range(5):
        data = zip_bytes({f"level{level}.zip": data})
    result = run(data)  # default max_archive_depth = 3
    assert "archive_limit" in all_reasons(result.children)
    assert result.files == ()


def test_nested_zip_within_depth_is_unpacked() -> None:
    inner = zip_bytes({"dir/leaf.txt": b"leaf"})
    result = run(zip_bytes({"inner.zip": inner, "top.txt": b"t"}))
    assert outputs(result) == ["dir_leaf.txt", "top.txt"]
    assert result.children[0].children[0].filename == "dir/leaf.txt"


def test_nested_bomb_shares_one_budget() -> None:
    """42.zip-style: 16 x 16 copies of a 4 MiB-of-zeros zip; each archive alone is within
    its own ratio, so only the per-message budget stops the multiplication."""
    inner = zip_bytes({"zeros.bin": bytes(4 * 1024 * 1024)})
    mid = zip_bytes({f"m{i}.zip": inner for i in range(16)}, zipfile.ZIP_STORED)
    top = zip_bytes({f"t{i}.zip": mid for i in range(16)}, zipfile.ZIP_STORED)
    ctx = make_ctx(max_unpacked_bytes=64 * 1024 * 1024)
    try:
        result = run(top, ctx=ctx)
        assert "archive_limit" in all_reasons(result.children)
    except ArchiveLimit:
        pass
    total_seen = sum(len(d) for n, d in SEEN if n == "zeros.bin")
    assert total_seen <= 64 * 1024 * 1024


# --- encryption -------------------------------------------------------------------------------
ENCRYPTED = [
    "adversarial/archives/corkami-zip/zipcrypto.zip",
    "adversarial/archives/corkami-zip/aes.zip",
    "adversarial/archives/libarchive/zip_traditional_encryption_data.zip",
    "adversarial/archives/libarchive/zip_winzip_aes256.zip",
    "adversarial/archives/libarchive/zip_encryption_data.zip",
    "adversarial/archives/libarchive/zip_encryption_header.zip",
    "adversarial/archives/deco-mail-filter/test-1-encrypted.zip",  # AGPL: read, never copied
    "adversarial/office/oletools/rtfobj__issue_185.rtf.zip",
]


@pytest.mark.parametrize("rel", ENCRYPTED)
def test_encrypted_zip_withheld_with_ppap_notice(corpus: Path, rel: str) -> None:
    data = (corpus / rel).read_bytes()
    with pytest.raises(Encrypted) as info:
        run(data, Path(rel).name)
    assert "PPAP" in info.value.detail and "X-Mugai-Id" in info.value.detail
    assert SEEN == []


def test_encrypted_flag_in_generated_zip() -> None:
    data = bytearray(zip_bytes({"a.txt": b"x"}, zipfile.ZIP_STORED))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        struct.pack_into("<H", data, pos + flag_at, 1)
    with pytest.raises(Encrypted):
        sanitize_archive(bytes(data), "a.zip", detect(b"PK\x03\x04"), make_ctx())


# --- tar --------------------------------------------------------------------------------------
def tar_bytes(mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]

        def add(name: str, type_: bytes, content: bytes = b"", linkname: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type = type_
            info.size = len(content)
            info.linkname = linkname
            tf.addfile(info, io.BytesIO(content) if content else None)

        add("docs", tarfile.DIRTYPE)
        add("docs/読んで.txt", tarfile.REGTYPE, b"hello")
        add("docs/link", tarfile.SYMTYPE, linkname="/etc/passwd")
        add("docs/hard", tarfile.LNKTYPE, linkname="docs/読んで.txt")
        add("dev/sda", tarfile.BLKTYPE)
        add("dev/tty", tarfile.CHRTYPE)
        add("fifo", tarfile.FIFOTYPE)
        add("../escape.txt", tarfile.REGTYPE, b"x")
        add("/abs.txt", tarfile.REGTYPE, b"y")
    return buf.getvalue()


def check_tar_result(result: SanitizeResult) -> None:
    by_name = {c.filename: c for c in result.children}
    assert outputs(result) == ["docs_読んで.txt"]
    for special in ("docs/link", "docs/hard", "dev/sda", "dev/tty", "fifo"):
        assert by_name[special].reasons == ("unsupported_type",), special
    assert by_name["../escape.txt"].reasons == ("unsafe_path",)
    assert by_name["/abs.txt"].reasons == ("unsafe_path",)
    assert [n for n, _ in SEEN] == ["読んで.txt"]


@pytest.mark.parametrize(
    ("mode", "filename"),
    [("w", "a.tar"), ("w:gz", "a.tar.gz"), ("w:bz2", "a.tar.bz2"), ("w:xz", "a.txz")],
)
def test_tar_with_links_and_devices(mode: str, filename: str) -> None:
    check_tar_result(run(tar_bytes(mode), filename))


def test_tar_gz_bomb() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 50 * 1024 * 1024
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(ArchiveLimit):
        run(buf.getvalue(), "z.tgz")


def test_tar_too_many_members() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(30):
            info = tarfile.TarInfo(f"f{i}.txt")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveLimit):
        run(buf.getvalue(), "a.tar", make_ctx(max_archive_members=20))


def test_truncated_tar_gz_is_conversion_failure() -> None:
    data = gzip.compress(tar_bytes())[:-40]
    with pytest.raises(PartRefused) as info:
        run(data, "a.tar.gz")
    assert info.value.reason == "conversion_failed"


# --- single compressed files ------------------------------------------------------------------
def test_gzip_single_file_name_from_header() -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="report.csv", mode="wb", fileobj=buf) as fh:
        fh.write(b"a,b\n1,2\n")
    result = run(buf.getvalue(), "whatever.gz")
    assert names(result) == ["report.csv"]
    assert SEEN == [("report.csv", b"a,b\n1,2\n")]


def test_gzip_single_file_name_from_filename() -> None:
    result = run(gzip.compress(b"hello", mtime=0), "メモ.txt.gz")
    assert names(result) == ["メモ.txt"]


def test_concatenated_gzip_members() -> None:
    result = run(gzip.compress(b"one ") + gzip.compress(b"two"), "x.txt.gz")
    assert SEEN == [("x.txt", b"one two")]
    assert result.action is Action.CONVERTED


@pytest.mark.parametrize(
    ("compress", "filename"),
    [(bz2.compress, "note.txt.bz2"), (lzma.compress, "note.txt.xz")],
)
def test_bzip2_xz_single_files(compress: object, filename: str) -> None:
    result = run(compress(b"plain text"), filename)  # type: ignore[operator]
    assert names(result) == ["note.txt"]


def test_gzip_bomb() -> None:
    data = gzip.compress(bytes(64 * 1024 * 1024))
    with pytest.raises(ArchiveLimit):
        run(data, "z.gz")


def test_corrupt_gzip() -> None:
    with pytest.raises(PartRefused) as info:
        run(b"\x1f\x8b\x08\x00" + b"\xff" * 50, "x.gz")
    assert info.value.reason == "conversion_failed"


# --- 7z and rar -------------------------------------------------------------------------------
def sevenzip(members: dict[str, bytes], password: str | None = None) -> bytes:
    py7zr = pytest.importorskip("py7zr")
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password, header_encryption=bool(password)) as z:
        for name, content in members.items():
            z.writestr(content, name)
    return buf.getvalue()


def test_7z_members() -> None:
    result = run(sevenzip({"資料/表.txt": b"x", "b.txt": b"yy", "empty.txt": b""}), "a.7z")
    assert sorted(names(result)) == ["b.txt", "empty.txt", "資料/表.txt"]
    assert "資料_表.txt" in outputs(result)


def test_7z_encrypted() -> None:
    with pytest.raises(Encrypted):
        run(sevenzip({"a.txt": b"secret"}, password="pw"), "a.7z")


def test_7z_bomb() -> None:
    with pytest.raises(ArchiveLimit):
        run(sevenzip({"zeros.bin": bytes(30 * 1024 * 1024)}), "a.7z")


def test_corpus_7z(corpus: Path) -> None:
    data = (corpus / "adversarial/formats/corkami-mini/7-Zip.7z").read_bytes()
    assert run(data, "7-Zip.7z").action is Action.CONVERTED


def test_rar_unsupported(corpus: Path) -> None:
    data = (corpus / "adversarial/formats/corkami-mini/rar5.rar").read_bytes()
    with pytest.raises(UnsupportedType):
        run(data, "a.rar")


# --- whole corpus -----------------------------------------------------------------------------
def test_corpus_archives_never_crash(corpus: Path) -> None:
    paths = sorted((corpus / "adversarial/archives").rglob("*")) + sorted(
        (corpus / "adversarial/formats/corkami-mini").glob("*")
    )
    outcomes: dict[str, str] = {}
    for p in paths:
        if not p.is_file():
            continue
        data = p.read_bytes()
        d = detect(data, p.name)
        if d.kind not in ARCHIVE_KINDS:
            continue
        try:
            r = sanitize_archive(data, p.name, d, make_ctx())
            outcomes[p.name] = r.action.value
        except PartRefused as exc:
            outcomes[p.name] = exc.reason
    assert outcomes["zip_filename_cp932.zip"] == "converted"
    assert outcomes["zipcrypto.zip"] == "encrypted"
    assert outcomes["rar4.rar"] == "unsupported_type"
    assert len(outcomes) >= 40
