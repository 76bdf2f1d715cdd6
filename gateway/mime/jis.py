"""The CP50220/CP50221 reading of ISO-2022-JP (plus the JIS X 0212/0213 sets).

CPython's ``iso2022_jp*`` codecs reject the Windows repertoire that Japanese mailers really
send (NEC row 13 ①㈱㍻, IBM extension kanji 髙﨑), so this decoder is ours. It is a plain
function, not a registered codec: callers (``gateway.mime.charset``) call it by name, so no
registration has to happen before use.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

__all__ = ["JisError", "decode_iso2022jp", "decode_jis", "has_jis_escape"]

_REPLACEMENT = "\ufffd"


class JisError(ValueError):
    """A byte sequence that no ISO-2022-JP variant can decode (strict mode only)."""


# Designations we understand. Two-byte sets are decoded through a codec that has the set at
# (pair | 0x8080), optionally after a prefix byte; JIS X 0208 goes through Shift_JIS/cp932.
_ASCII, _KANA = "ascii", "kana"
_X0208 = "x0208"
_ESCAPES: dict[bytes, str] = {
    b"(B": _ASCII,
    b"(J": _ASCII,  # JIS X 0201 Roman: CP5022x reads it as ASCII (no ¥ in file names/paths)
    b"(H": _ASCII,  # obsolete mis-designation of Roman, seen in old mail
    b"(I": _KANA,
    b"$@": _X0208,
    b"$B": _X0208,
    b"$(B": _X0208,
    b"$(@": _X0208,
    b"$(O": "x0213p1",
    b"$(Q": "x0213p1",
    b"$(P": "x0213p2",
    b"$(D": "x0212",
    b"$A": "gb2312",
    b"$(C": "ksc5601",
}
_EUC_FORM: dict[str, tuple[str, bytes]] = {
    "x0213p1": ("euc_jis_2004", b""),
    "x0213p2": ("euc_jis_2004", b"\x8f"),
    "x0212": ("euc_jp", b"\x8f"),
    "gb2312": ("gb2312", b""),
    "ksc5601": ("euc_kr", b""),
}
_SHIFT = re.compile(
    b"(\x1b&@|[\x0e\x0f]|" + b"|".join(b"\x1b" + re.escape(k) for k in _ESCAPES) + b")"
)
_NON_GRAPHIC = re.compile(rb"[\x00-\x20\x7f]")


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    """JIS X 0208 row/cell pair (0x21..0x7E each) to its Shift_JIS code."""
    s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 & 1:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return bytes((s1, s2))


def _pair(charset: str, j1: int, j2: int) -> str | None:
    """One two-byte character, or None when the code point is unassigned."""
    try:
        if charset == _X0208:
            # cp932 holds JIS X 0208 plus NEC row 13 and NEC-selected IBM kanji (rows 89-92).
            sjis = _jis_to_sjis(j1, j2)
            if sjis[0] in (0xEB, 0xEC):
                # Unassigned rows 85-86 carry au (KDDI) emoji, whose Shift_JIS form is 0x0B00
                # higher: cp932 maps it to the private-use area like other carrier emoji.
                sjis = bytes((sjis[0] + 0x0B, sjis[1]))
            return sjis.decode("cp932")
        codec, prefix = _EUC_FORM[charset]
        return (prefix + bytes((j1 | 0x80, j2 | 0x80))).decode(codec)
    except UnicodeDecodeError:
        return None


@cache
def _table(charset: str) -> dict[bytes, str]:
    """All assigned pairs of a two-byte set, built once: lookups keep long bodies fast."""
    table: dict[bytes, str] = {}
    for j1 in range(0x21, 0x7F):
        for j2 in range(0x21, 0x7F):
            ch = _pair(charset, j1, j2)
            if ch is not None:
                table[bytes((j1, j2))] = ch
    return table


def decode_jis(data: bytes, strict: bool) -> str:
    out: list[str] = []

    def bad(what: str) -> None:
        if strict:
            raise JisError(what)
        out.append(_REPLACEMENT)

    mode = before_so = _ASCII
    # split() alternates text runs (even indexes) and the shifts between them (odd indexes).
    for k, piece in enumerate(_SHIFT.split(data)):
        if k % 2 == 0:
            if piece:
                _decode_run(piece, mode, out, bad)
        elif piece == b"\x0e":  # SO: half-width katakana until SI
            before_so = mode if mode != _KANA else before_so
            mode = _KANA
        elif piece == b"\x0f":  # SI
            mode = before_so if mode == _KANA else mode
        elif piece != b"\x1b&@":  # JIS X 0208-1990 announcer: the real designation follows
            mode = _ESCAPES[piece[1:]]
    return "".join(out)


def _decode_run(run: bytes, mode: str, out: list[str], bad: Callable[[str], None]) -> None:
    """A run of bytes between shifts, in one designation."""
    n = len(run)
    if mode == _ASCII and run.isascii() and b"\x1b" not in run:
        out.append(run.decode("ascii"))
        return
    table = _table(mode) if mode not in (_ASCII, _KANA) else {}
    if table and n % 2 == 0 and not _NON_GRAPHIC.search(run):
        try:  # the common case: a clean run of assigned characters
            out.append("".join([table[run[k : k + 2]] for k in range(0, n, 2)]))
            return
        except KeyError:
            pass  # something unassigned or 8-bit: take the careful path below
    i = 0
    while i < n:
        b = run[i]
        if b == 0x1B or b >= 0x80:
            bad("unknown escape sequence" if b == 0x1B else "8-bit byte")
            i += 1
        elif b <= 0x20 or b == 0x7F or mode == _ASCII:
            # Controls and space are not part of any 94-set; pass them through so a sender
            # who forgot ESC ( B before a line break loses nothing.
            out.append(chr(b))
            i += 1
        elif mode == _KANA:
            if b <= 0x5F:
                out.append(chr(0xFF61 + b - 0x21))
            else:
                bad("byte outside JIS X 0201 katakana")
            i += 1
        elif i + 1 < n and 0x21 <= run[i + 1] <= 0x7E:
            ch = table.get(run[i : i + 2])
            if ch is None:
                bad("unassigned two-byte code")
            else:
                out.append(ch)
            i += 2
        else:
            bad("truncated two-byte character")
            i += 1


def decode_iso2022jp(data: bytes) -> str:
    """Decode an ISO-2022-JP stream the way CP50220/CP50221 do (plus JIS X 0212/0213 sets).

    Undecodable bytes become U+FFFD; everything decodable is decoded.
    """
    return decode_jis(data, strict=False)


def has_jis_escape(data: bytes) -> bool:
    return b"\x1b$" in data or b"\x1b(" in data
