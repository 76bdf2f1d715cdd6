"""Test helpers that build real-world Japanese mail bytes (CP50220 ISO-2022-JP etc.).

Written independently of gateway.mime.charset so the tests check it rather than mirror it.
"""

from __future__ import annotations

import base64
from functools import lru_cache


def _sjis_to_jis(s1: int, s2: int) -> tuple[int, int]:
    base = 0x70 if s1 < 0xA0 else 0xB0
    if s2 < 0x9F:
        return (s1 - base) * 2 - 1, s2 - (0x1F if s2 < 0x7F else 0x20)
    return (s1 - base) * 2, s2 - 0x7E


@lru_cache(maxsize=1)
def _nec_selected() -> dict[str, bytes]:
    """IBM extension kanji → their NEC-selected cp932 codes (0xED40-0xEEFC), which sit in JIS
    rows 89-92 and so can be written in ISO-2022-JP (that is what CP50220 does)."""
    table: dict[str, bytes] = {}
    for s1 in (0xED, 0xEE):
        for s2 in range(0x40, 0xFD):
            if s2 == 0x7F:
                continue
            try:
                table.setdefault(bytes([s1, s2]).decode("cp932"), bytes([s1, s2]))
            except UnicodeDecodeError:
                continue
    return table


def cp50220(text: str) -> bytes:
    """Encode like Windows' CP50220: JIS X 0208 plus NEC row 13 and NEC-selected IBM kanji."""
    out = bytearray()
    mode = "ascii"
    for ch in text:
        if ord(ch) < 0x80:
            if mode != "ascii":
                out += b"\x1b(B"
                mode = "ascii"
            out += ch.encode("ascii")
            continue
        sj = _nec_selected().get(ch) or ch.encode("cp932")
        if len(sj) != 2:
            raise ValueError(f"not encodable in CP50220 test helper: {ch!r}")
        if mode != "jis":
            out += b"\x1b$B"
            mode = "jis"
        j1, j2 = _sjis_to_jis(sj[0], sj[1])
        out += bytes([j1, j2])
    if mode != "ascii":
        out += b"\x1b(B"
    return bytes(out)


def encoded_words(text: str, split: int | None = None) -> str:
    """RFC 2047 B-encoded ISO-2022-JP; `split` cuts the byte string (even mid-character)."""
    raw = cp50220(text)
    pieces = [raw] if split is None else [raw[:split], raw[split:]]
    return " ".join("=?ISO-2022-JP?B?" + base64.b64encode(p).decode("ascii") + "?=" for p in pieces)
