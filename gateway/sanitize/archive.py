"""Archives (zip, tar, gzip/bzip2/xz, 7z): unpack within limits, sanitize every member.

Each member goes back through the registry (``ctx.recurse``) and comes out as its own
rebuilt file; the archive itself is never re-packed. Limits fail closed with
``ArchiveLimit``: member count, nesting depth, total unpacked bytes and the unpacked /
packed ratio are enforced *while* decompressing, chunk by chunk, never from declared sizes.
The unpacked-bytes cap is shared by all archives of one message (nested bombs such as
42.zip multiply per level otherwise).

ZIP names without the UTF-8 flag are decoded as CP932 from their raw bytes, so the 0x5C
trail byte of 表/ソ/能 is never taken for a path separator.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import json
import logging
import lzma
import posixpath
import re
import stat
import struct
import tarfile
import threading
import weakref
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from gateway.errors import (
    ArchiveLimit,
    ConversionFailed,
    Encrypted,
    InternalError,
    PartRefused,
    UnsafePath,
    UnsupportedType,
)
from gateway.model import Action, CleanFile, Detected, PartReport, SanitizeResult
from gateway.reasons import Reason
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Compressed input fed to decoders without a max_length (deflate64) per step: deflate
# expands at most ~1032:1, so one step yields a few MiB at most.
RAW_STEP = 4 * 1024
# A few KiB of zipped text legitimately exceeds any ratio: the ratio applies beyond this.
RATIO_FLOOR = 1024 * 1024

PPAP_DETAIL = (
    "暗号化ZIP (PPAP) は無害化できないため削除しました。原本は保管されています。"
    "必要な場合は X-Mugai-Id を添えて管理者に原本を請求してください。 / "
    "Encrypted ZIP (PPAP) cannot be sanitized and was removed. The original is kept: "
    "ask the administrator for it, quoting the X-Mugai-Id."
)
UNSAFE_REASON = UnsafePath.reason

_ZIP_STORED_OR_DEFLATED = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ZIP_DEFLATE64 = 9
_ZIP_AES = 99
_SINGLE_EXT = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2", ".bz"), "xz": (".xz",)}
_TAR_ALIASES = {".tgz": ".tar", ".tbz": ".tar", ".tbz2": ".tar", ".txz": ".tar"}


# --- budgets -------------------------------------------------------------------------
class _Shared:
    """Unpacked bytes left for one message, shared by all its (nested) archives."""

    def __init__(self, cap: int) -> None:
        self.remaining = cap
        self.lock = threading.Lock()


_shared_by_message: dict[int, _Shared] = {}
_shared_lock = threading.Lock()


def _shared_for(ctx: Context) -> _Shared:
    # The message's PageBudget object is the one thing every Context of a message
    # shares; key on it and drop the entry when it is collected.
    key = id(ctx.pages)
    with _shared_lock:
        shared = _shared_by_message.get(key)
        if shared is None:
            shared = _Shared(ctx.limits.max_unpacked_bytes)
            _shared_by_message[key] = shared
            weakref.finalize(ctx.pages, _shared_by_message.pop, key, None)
        return shared


class _Budget:
    def __init__(self, packed_size: int, ctx: Context) -> None:
        limits = ctx.limits
        by_ratio = int(max(packed_size, 1) * limits.max_ratio)
        self.cap = min(limits.max_unpacked_bytes, max(by_ratio, RATIO_FLOOR))
        self.used = 0
        self.shared = _shared_for(ctx)

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.cap:
            raise ArchiveLimit(f"unpacked size over {self.cap} bytes (ratio or size limit)")
        with self.shared.lock:
            self.shared.remaining -= n
            if self.shared.remaining < 0:
                raise ArchiveLimit("unpacked size of the message's archives over the limit")


def _read_bounded(stream: IO[bytes], budget: _Budget | None) -> bytes:
    buf = bytearray()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return bytes(buf)
        if budget is not None:
            budget.take(len(chunk))
        buf += chunk


# --- entries -------------------------------------------------------------------------
@dataclass
class _Entry:
    name: str  # logical name as stored, decoded, "/"-separated
    kind: str  # "file", "dir", "link", "special", "refused"
    read: Callable[[], bytes] | None = None
    refusal: PartRefused | None = None


def sanitize_archive(
    data: bytes, filename: str, detected: Detected, ctx: Context
) -> SanitizeResult:
    """Unpack ``data`` (kind from ``detected``) and sanitize each member via ``ctx.recurse``."""
    if ctx.recurse is None:
        raise InternalError("archive sanitizer called without a member dispatcher")
    if ctx.depth >= ctx.limits.max_archive_depth:
        raise ArchiveLimit(f"archives nested deeper than {ctx.limits.max_archive_depth}")
    budget = _Budget(len(data), ctx)
    kind = detected.kind
    entries: Iterator[_Entry]
    if kind == "zip":
        entries = _zip_entries(data, ctx, budget)
    elif kind == "tar":
        entries = _tar_entries(data, ctx, budget)
    elif kind in _SINGLE_EXT:
        entries = _compressed_entries(kind, data, filename, ctx, budget)
    elif kind == "7z":
        entries = _sevenzip_entries(data, ctx, budget)
    elif kind == "rar":
        raise UnsupportedType("RAR archives are not supported (ask the sender for ZIP)")
    else:
        raise UnsupportedType(f"{kind} is not an archive type this sanitizer reads")
    return _sanitize_members(entries, ctx)


def _sanitize_members(entries: Iterator[_Entry], ctx: Context) -> SanitizeResult:
    files: list[CleanFile] = []
    reports: list[PartReport] = []
    used_names: set[str] = set()
    count = 0
    for entry in entries:
        if entry.kind == "dir" or _is_mac_metadata(entry.name):
            continue
        count += 1
        if count > ctx.limits.max_archive_members:
            raise ArchiveLimit(f"more than {ctx.limits.max_archive_members} members")
        index = str(count)
        logical, unsafe = _logical_name(entry.name)
        if entry.kind in ("link", "special"):
            reports.append(_removed(index, entry.name, entry.kind, UnsupportedType.reason))
            continue
        if unsafe:
            reports.append(_removed(index, entry.name, "", UNSAFE_REASON))
            continue
        if entry.kind == "refused" or entry.read is None:
            reason = entry.refusal.reason if entry.refusal else ConversionFailed.reason
            reports.append(_removed(index, logical, "", reason))
            continue
        try:
            member = entry.read()
        except PartRefused as exc:
            if isinstance(exc, ArchiveLimit | Encrypted):
                raise  # the archive as a whole is over its limits / locked
            reports.append(_removed(index, logical, "", exc.reason))
            continue
        except Exception as exc:  # corrupt member data (CRC, truncated stream, ...)
            log.info("archive member %s unreadable: %s", index, type(exc).__name__)
            reports.append(_removed(index, logical, "", ConversionFailed.reason))
            continue
        report, outs = recurse_member(member, logical, ctx, index)
        renamed = tuple(_flatten(f, logical, used_names) for f in outs)
        files.extend(renamed)
        reports.append(
            dataclasses.replace(
                report, filename=logical, outputs=tuple(f.filename for f in renamed)
            )
        )
    action = Action.CONVERTED if files else Action.REMOVED
    reasons: tuple[str, ...] = ()
    if not files:
        reasons = tuple(dict.fromkeys(r for rep in reports for r in rep.reasons)) or (
            Reason.EMPTY_ARCHIVE,
        )
    return SanitizeResult(
        files=tuple(files), action=action, reasons=reasons, children=tuple(reports)
    )


def recurse_member(
    member: bytes, name: str, ctx: Context, index: str
) -> tuple[PartReport, tuple[CleanFile, ...]]:
    """Sanitize one member through the registry; the member sanitizer sees the base name."""
    assert ctx.recurse is not None
    base = name.rsplit("/", 1)[-1]
    try:
        return ctx.recurse(member, base, "", ctx.child(), index)
    except PartRefused as exc:  # the registry reports these itself; a bare recurse may not
        return (
            PartReport(
                index=index,
                filename=name,
                declared_type="",
                detected_type="",
                action=Action.REMOVED,
                reasons=(exc.reason,),
                size=len(member),
                sha256=hashlib.sha256(member).hexdigest(),
            ),
            (),
        )


def _removed(index: str, name: str, detected: str, reason: str) -> PartReport:
    return PartReport(
        index=index,
        filename=name,
        declared_type="",
        detected_type=detected,
        action=Action.REMOVED,
        reasons=(reason,),
    )


_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def _is_mac_metadata(name: str) -> bool:
    # macOS Finder adds AppleDouble twins (__MACOSX/._x) and .DS_Store: metadata only,
    # listing them as "removed" would just alarm the recipient.
    n = name.replace("\\", "/")
    return n.startswith("__MACOSX/") or n.rsplit("/", 1)[-1] == ".DS_Store"


def _logical_name(name: str) -> tuple[str, bool]:
    """Normalized "/"-path and whether it tries to leave the extraction root."""
    n = name.replace("\\", "/")
    parts = n.split("/")
    unsafe = n.startswith("/") or bool(_DRIVE_RE.match(n)) or ".." in parts
    clean = "/".join(p for p in parts if p not in ("", "."))
    return (clean or "unnamed"), unsafe


def _flatten(f: CleanFile, logical: str, used: set[str]) -> CleanFile:
    """ "フォルダ/表.xlsx" sanitized to "表.pdf" becomes "フォルダ_表.pdf"; names unique."""
    dirs = logical.split("/")[:-1]
    ext = f.filename.rsplit(".", 1)[1] if "." in f.filename else ""
    name = clean_name("_".join([*dirs, f.filename]), ext) if dirs else f.filename
    return dataclasses.replace(f, filename=unique_name(name, used))


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``stem(2).ext``, ``stem(3).ext``, ... if taken; records the result."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{stem}({n}).{ext}" if ext else f"{stem}({n})"
        n += 1
    used.add(candidate)
    return candidate


# --- ZIP -----------------------------------------------------------------------------
def _zip_entries(data: bytes, ctx: Context, budget: _Budget) -> Iterator[_Entry]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:
        if len(data) >= 8 and data[:4] == b"PK\x03\x04":
            if struct.unpack_from("<H", data, 6)[0] & 0x41:
                raise Encrypted(PPAP_DETAIL) from exc  # encrypted central directory
        raise ConversionFailed("unreadable ZIP archive") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > ctx.limits.max_archive_members:
            raise ArchiveLimit(f"{len(infos)} members (limit {ctx.limits.max_archive_members})")
        if any(i.flag_bits & 0x41 or i.compress_type == _ZIP_AES for i in infos):
            raise Encrypted(PPAP_DETAIL)
        _check_overlap(infos, getattr(zf, "start_dir", len(data)))
        for info in infos:
            yield _zip_entry(zf, info, data, budget)


def _check_overlap(infos: list[zipfile.ZipInfo], cd_start: int) -> None:
    """Members whose data overlap (or share one local header) are a zip bomb trick."""
    spans = sorted((i.header_offset, i.header_offset + 30 + i.compress_size) for i in infos)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        if next_start < end:
            raise ArchiveLimit("overlapping ZIP members (zip bomb)")
    if spans and spans[-1][1] > cd_start:
        raise ArchiveLimit("ZIP member overlaps the central directory")


def _zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes, budget: _Budget) -> _Entry:
    name = _zip_name(info)
    if info.is_dir():
        return _Entry(name, "dir")
    if info.create_system == 3:  # Unix: the mode says links and devices apart
        fmt = stat.S_IFMT(info.external_attr >> 16)
        if fmt == stat.S_IFLNK:
            return _Entry(name, "link")
        if fmt not in (0, stat.S_IFREG):
            return _Entry(name, "special")
    method = info.compress_type
    if method in _ZIP_STORED_OR_DEFLATED:

        def read() -> bytes:
            with zf.open(info) as fh:
                return _read_bounded(fh, budget)

        return _Entry(name, "file", read)
    if method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, _ZIP_DEFLATE64):
        return _Entry(name, "file", lambda: _zip_raw_member(info, data, budget))
    return _Entry(name, "refused", refusal=UnsupportedType(f"ZIP compression method {method}"))


def _zip_raw_member(info: zipfile.ZipInfo, data: bytes, budget: _Budget) -> bytes:
    """bzip2 / LZMA / Deflate64 members, decoded by us with a bounded output per step
    (zipfile's own decoders for these take no max_length: a bomb would fill memory)."""
    off = info.header_offset
    if data[off : off + 4] != b"PK\x03\x04":
        raise ConversionFailed("bad local header")
    name_len, extra_len = struct.unpack_from("<HH", data, off + 26)
    start = off + 30 + name_len + extra_len
    raw = data[start : start + info.compress_size]
    out = bytearray()
    crc = 0
    for piece in _decode_stream(info.compress_type, raw):
        budget.take(len(piece))
        crc = zlib.crc32(piece, crc)
        out += piece
    if crc != info.CRC:
        raise ConversionFailed("CRC mismatch")
    return bytes(out)


class _Decoder(Protocol):
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def eof(self) -> bool: ...


def _decode_stream(method: int, raw: bytes) -> Iterator[bytes]:
    if method == _ZIP_DEFLATE64:
        yield from _inflate64(raw)
        return
    dec: _Decoder
    if method == zipfile.ZIP_BZIP2:
        dec = bz2.BZ2Decompressor()
        payload = raw
    else:  # ZIP's LZMA: 2-byte version, 2-byte properties size, properties, raw LZMA1
        if len(raw) < 4:
            raise ConversionFailed("truncated LZMA header")
        (psize,) = struct.unpack_from("<H", raw, 2)
        props = raw[4 : 4 + psize]
        filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore[attr-defined]
        dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
        payload = raw[4 + psize :]
    yield from _drain(dec, payload)


def _drain(dec: _Decoder, payload: bytes) -> Iterator[bytes]:
    piece = dec.decompress(payload, CHUNK)
    while True:
        if piece:
            yield piece
        if dec.eof or dec.needs_input:
            return
        piece = dec.decompress(b"", CHUNK)


def _inflate64(raw: bytes) -> Iterator[bytes]:
    try:
        import inflate64
    except ImportError as exc:  # optional: comes with py7zr
        raise UnsupportedType("ZIP Deflate64 members need the inflate64 package") from exc
    inflater = inflate64.Inflater()
    for pos in range(0, len(raw), RAW_STEP):
        out = inflater.inflate(raw[pos : pos + RAW_STEP])
        if out:
            yield out
        if inflater.eof:
            return


def _zip_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:
        return info.orig_filename  # UTF-8 flag: zipfile decoded it right
    # zipfile decoded the raw bytes as cp437, which maps all 256 values: undo that to get
    # the exact bytes back before any "\" handling.
    raw = info.orig_filename.encode("cp437")
    unicode_path = _unicode_path_extra(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    return decode_legacy_name(raw)


def decode_legacy_name(raw: bytes) -> str:
    """Names without the UTF-8 flag: ASCII, else UTF-8 (macOS), else CP932, else cp437."""
    for codec in ("ascii", "utf-8", "cp932"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("cp437")


def _unicode_path_extra(extra: bytes, raw_name: bytes) -> str | None:
    """Info-ZIP Unicode Path extra field (0x7075), valid only if its CRC matches the name."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if tag == 0x7075 and len(body) >= 5 and body[0] == 1:
            (crc,) = struct.unpack_from("<I", body, 1)
            if crc == zlib.crc32(raw_name):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
    return None


# --- tar and single compressed files ----------------------------------------------------
def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def _decompress_all(kind: str, data: bytes, budget: _Budget) -> bytes:
    """Whole stream, concatenated members too, never more than the budget allows."""
    out = bytearray()
    rest = data
    while rest:
        dec = _decompressor(kind)
        try:
            if kind == "gzip":
                piece = dec.decompress(rest, CHUNK)
                while True:
                    budget.take(len(piece))
                    out += piece
                    if dec.eof or not dec.unconsumed_tail:
                        break
                    piece = dec.decompress(dec.unconsumed_tail, CHUNK)
                if not dec.eof:
                    raise ConversionFailed("truncated gzip stream")
                rest = dec.unused_data
            else:
                for piece in _drain(dec, rest):
                    budget.take(len(piece))
                    out += piece
                if not dec.eof:
                    raise ConversionFailed(f"truncated {kind} stream")
                rest = dec.unused_data
        except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as exc:
            raise ConversionFailed(f"corrupt {kind} stream") from exc
        rest = rest.lstrip(b"\x00")  # padding after the last member is common
    return bytes(out)


def _compressed_entries(
    kind: str, data: bytes, filename: str, ctx: Context, budget: _Budget
) -> Iterator[_Entry]:
    plain = _decompress_all(kind, data, budget)
    if _is_tar(plain):
        yield from _tar_plain_entries(plain, ctx, budget)
        return
    yield _Entry(_single_name(kind, data, filename), "file", lambda: plain)


def _single_name(kind: str, data: bytes, filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if kind == "gzip" and len(data) > 10 and data[3] & 0x08:  # FNAME in the gzip header
        pos = 10
        if data[3] & 0x04:  # FEXTRA comes first
            pos += 2 + int.from_bytes(data[10:12], "little")
        end = data.find(b"\x00", pos, pos + 1024)
        if end > pos:
            return decode_legacy_name(data[pos:end]).replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = posixpath.splitext(base)
    if ext.lower() in _SINGLE_EXT[kind]:
        return stem or "unnamed"
    if ext.lower() in _TAR_ALIASES:
        return stem + _TAR_ALIASES[ext.lower()]
    return stem or "unnamed"


def _is_tar(plain: bytes) -> bool:
    if plain[257:262] == b"ustar":
        return True
    if len(plain) < 512:
        return False
    try:  # pre-POSIX (v7) tar: only the header checksum tells
        stored = int(plain[148:156].strip(b"\x00 ") or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(plain[:148]) + 8 * 0x20 + sum(plain[156:512])


def _tar_entries(data: bytes, ctx: Context, budget: _Budget) -> Iterator[_Entry]:
    yield from _tar_plain_entries(data, ctx, budget)


def _tar_plain_entries(plain: bytes, ctx: Context, budget: _Budget) -> Iterator[_Entry]:
    # Compressed tars were fully (and boundedly) decompressed before: tarfile then reads
    # from memory, so even a huge pax header cannot make it allocate beyond the input.
    try:
        tf = tarfile.open(fileobj=io.BytesIO(plain), mode="r:")
    except tarfile.TarError as exc:
        raise ConversionFailed("unreadable tar archive") from exc
    seen = 0
    with tf:
        while True:
            try:
                member = tf.next()
            except tarfile.TarError as exc:
                raise ConversionFailed("corrupt tar header") from exc
            if member is None:
                return
            seen += 1
            if seen > ctx.limits.max_archive_members * 2:
                raise ArchiveLimit("too many tar entries")
            yield _tar_entry(tf, member, budget)


def _tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo, budget: _Budget) -> _Entry:
    if member.isdir():
        return _Entry(member.name, "dir")
    if member.issym() or member.islnk():
        return _Entry(member.name, "link")
    if not member.isfile():
        return _Entry(member.name, "special")

    def read() -> bytes:
        fh = tf.extractfile(member)
        if fh is None:
            raise ConversionFailed("tar member without data")
        with fh:
            # Plain member data is a slice of what was already counted; only sparse
            # members expand (their holes), so only they draw on the budget.
            return _read_bounded(fh, budget if member.issparse() else None)

    return _Entry(member.name, "file", read)


# --- 7z ----------------------------------------------------------------------------------
# py7zr and its codecs (lzma, bzip2, zstd, brotli, PPMd, BCJ: C code) parse the archive in the
# jail (``unpack_child``); this side believes no name, kind or size without a bound.
_UNPACK_CHILD = "gateway.sanitize.unpack_child"
_RECORD_LINE_MAX = 8192
_NAME_MAX = 4096
_SEVENZIP_KINDS = frozenset({"file", "link", "special", "duplicate"})


def _sevenzip_entries(data: bytes, ctx: Context, budget: _Budget) -> Iterator[_Entry]:
    from gateway.sanitize import sandbox

    max_entries = ctx.limits.max_archive_members * 2
    # The child's own cap is what this side may still take; it is re-checked record by record.
    cap = min(budget.cap - budget.used, max(_shared_for(ctx).remaining, 0))
    result = sandbox.run(
        [*sandbox.python_child(_UNPACK_CHILD), "7z", str(max_entries), str(max(cap, 0))],
        stdin=data,
        limits=sandbox.Limits(
            seconds=max(ctx.limits.min_seconds, 1.0),
            memory_mb=ctx.limits.memory_mb,
            max_processes=16,
            max_output_bytes=max(cap, 0) + (max_entries + 2) * _RECORD_LINE_MAX,
        ),
        network=ctx.limits.network_isolation,
    )
    if result.killed == "output_too_large":
        raise ArchiveLimit("7z unpacked size over the limit")
    if result.killed is not None:
        raise ConversionFailed(f"7z unpacking stopped ({result.killed})")
    entries = _parse_sevenzip_records(result.stdout, max_entries, budget)
    if result.returncode != 0:
        raise ConversionFailed(f"7z unpacker exited with {result.returncode}")
    yield from entries


def _parse_sevenzip_records(out: bytes, max_entries: int, budget: _Budget) -> list[_Entry]:
    return parse_records(out, max_entries, budget.take, what="7z")


def parse_records(
    out: bytes,
    max_entries: int,
    take: Callable[[int], None],
    *,
    what: str,
    check_names: bool = True,
) -> list[_Entry]:
    """Entries from an ``unpack_child`` record stream, every field bounded and re-checked;
    ``take(size)`` charges a member's size before its bytes are believed."""
    entries: list[_Entry] = []
    names: set[str] = set()
    pos = 0
    while True:
        nl = out.find(b"\n", pos, pos + _RECORD_LINE_MAX)
        if nl < 0:
            raise ConversionFailed(f"{what} unpacker output truncated or malformed")
        try:
            record = json.loads(out[pos:nl])
        except ValueError:
            raise ConversionFailed(f"{what} unpacker output malformed") from None
        pos = nl + 1
        if not isinstance(record, dict):
            raise ConversionFailed(f"{what} unpacker output malformed")
        if record.get("end") is True and len(record) == 1:
            if pos != len(out):
                raise ConversionFailed(f"{what} unpacker wrote past its end")
            return entries
        error = record.get("error")
        if error is not None:
            if error == "encrypted":
                raise Encrypted(PPAP_DETAIL)
            if error in ("bomb", "too_many"):
                raise ArchiveLimit(f"{what} archive over the limits ({error})")
            raise ConversionFailed(f"unreadable {what} archive")
        name, kind, size = record.get("name"), record.get("kind"), record.get("size")
        if (
            set(record) != {"name", "kind", "size"}
            or not isinstance(name, str)
            or not 0 < len(name) <= _NAME_MAX
            or kind not in _SEVENZIP_KINDS
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or (kind != "file" and size != 0)
        ):
            raise ConversionFailed(f"{what} unpacker sent an invalid record")
        if len(entries) >= max_entries:
            raise ArchiveLimit(f"too many entries in the {what} archive")
        if kind == "file":
            take(size)  # before the bytes are believed
            if pos + size > len(out):
                raise ConversionFailed(f"{what} unpacker output truncated")
            content = out[pos : pos + size]
            pos += size
            if check_names and (_logical_name(name)[1] or name in names):
                entries.append(_Entry(name, "refused", refusal=PartRefused("unsafe name")))
            else:
                entries.append(_Entry(name, "file", lambda c=content: c))  # type: ignore[misc]
            names.add(name)
        elif kind == "duplicate":
            entries.append(_Entry(name, "refused", refusal=PartRefused("unsafe name")))
        else:
            entries.append(_Entry(name, kind))
