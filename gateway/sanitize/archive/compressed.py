"""Single compressed files (gzip, bzip2, xz): the whole stream decoded within the budget,
then a tar inside is read as such, anything else is one member."""

from __future__ import annotations

import bz2
import lzma
import posixpath
import zlib
from collections.abc import Iterator
from typing import Any, Protocol

from gateway.errors import ConversionFailed
from gateway.sanitize.archive.budget import CHUNK, ArchiveBudget
from gateway.sanitize.archive.entry import Entry
from gateway.sanitize.archive.names import decode_legacy_name
from gateway.sanitize.archive.tar import is_tar, tar_plain_entries
from gateway.sanitize.base import Context

SINGLE_EXT = {"gzip": (".gz", ".gzip"), "bzip2": (".bz2", ".bz"), "xz": (".xz",)}
_TAR_ALIASES = {".tgz": ".tar", ".tbz": ".tar", ".tbz2": ".tar", ".txz": ".tar"}


class Decoder(Protocol):
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def eof(self) -> bool: ...


def drain(dec: Decoder, payload: bytes) -> Iterator[bytes]:
    """Decoded pieces of at most CHUNK bytes each, so the caller can charge each one."""
    piece = dec.decompress(payload, CHUNK)
    while True:
        if piece:
            yield piece
        if dec.eof or dec.needs_input:
            return
        piece = dec.decompress(b"", CHUNK)


def compressed_entries(
    kind: str, data: bytes, filename: str, ctx: Context, budget: ArchiveBudget
) -> Iterator[Entry]:
    plain = _decompress_all(kind, data, budget)
    if is_tar(plain):
        yield from tar_plain_entries(plain, ctx, budget)
        return
    yield Entry(_single_name(kind, data, filename), "file", lambda: plain)


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def _decompress_all(kind: str, data: bytes, budget: ArchiveBudget) -> bytes:
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
                for piece in drain(dec, rest):
                    budget.take(len(piece))
                    out += piece
                if not dec.eof:
                    raise ConversionFailed(f"truncated {kind} stream")
                rest = dec.unused_data
        except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as exc:
            raise ConversionFailed(f"corrupt {kind} stream") from exc
        rest = rest.lstrip(b"\x00")  # padding after the last member is common
    return bytes(out)


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
    if ext.lower() in SINGLE_EXT[kind]:
        return stem or "unnamed"
    if ext.lower() in _TAR_ALIASES:
        return stem + _TAR_ALIASES[ext.lower()]
    return stem or "unnamed"
