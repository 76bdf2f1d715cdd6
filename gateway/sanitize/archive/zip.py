"""ZIP members: stored/deflated through zipfile, bzip2/LZMA/Deflate64 decoded by us with a
bounded output per step; encrypted (PPAP) and overlapping (bomb) archives refused."""

from __future__ import annotations

import bz2
import io
import lzma
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator

from gateway.errors import ArchiveLimit, ConversionFailed, Encrypted, UnsupportedType
from gateway.sanitize.archive.budget import ArchiveBudget, read_bounded
from gateway.sanitize.archive.compressed import Decoder, drain
from gateway.sanitize.archive.entry import PPAP_DETAIL, Entry
from gateway.sanitize.archive.names import decode_legacy_name
from gateway.sanitize.base import Context

# Compressed input fed to decoders without a max_length (deflate64) per step: deflate
# expands at most ~1032:1, so one step yields a few MiB at most.
RAW_STEP = 4 * 1024

_ZIP_STORED_OR_DEFLATED = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ZIP_DEFLATE64 = 9
_ZIP_AES = 99


def zip_entries(data: bytes, ctx: Context, budget: ArchiveBudget) -> Iterator[Entry]:
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


def _zip_entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, data: bytes, budget: ArchiveBudget
) -> Entry:
    name = _zip_name(info)
    if info.is_dir():
        return Entry(name, "dir")
    if info.create_system == 3:  # Unix: the mode says links and devices apart
        fmt = stat.S_IFMT(info.external_attr >> 16)
        if fmt == stat.S_IFLNK:
            return Entry(name, "link")
        if fmt not in (0, stat.S_IFREG):
            return Entry(name, "special")
    method = info.compress_type
    if method in _ZIP_STORED_OR_DEFLATED:

        def read() -> bytes:
            with zf.open(info) as fh:
                return read_bounded(fh, budget)

        return Entry(name, "file", read)
    if method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, _ZIP_DEFLATE64):
        return Entry(name, "file", lambda: _zip_raw_member(info, data, budget))
    return Entry(name, "refused", refusal=UnsupportedType(f"ZIP compression method {method}"))


def _zip_raw_member(info: zipfile.ZipInfo, data: bytes, budget: ArchiveBudget) -> bytes:
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


def _decode_stream(method: int, raw: bytes) -> Iterator[bytes]:
    if method == _ZIP_DEFLATE64:
        yield from _inflate64(raw)
        return
    dec: Decoder
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
    yield from drain(dec, payload)


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
