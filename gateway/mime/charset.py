"""Japanese-correct decoding of bodies, header values and attachment file names.

CPython's ``iso2022_jp*`` codecs reject the Windows (CP50220/CP50221) repertoire that Japanese
mailers really send (NEC row 13 ①㈱㍻, IBM extension kanji 髙﨑), and ``email`` then leaves
encoded-words undecoded; labels also lie. Everything here is total: bad input degrades to
U+FFFD for bytes that are really invalid, never to an exception, and work is bounded.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Callable
from email.message import Message
from email.utils import getaddresses
from functools import cache

from charset_normalizer import from_bytes

__all__ = [
    "decode_iso2022jp",
    "normalize_charset",
    "decode_bytes",
    "decode_header_value",
    "decode_address_list",
    "part_filename",
]

ISO2022JP = "iso-2022-jp"
DETECT_PREFIX = 64 * 1024  # detection looks at this much; the chosen codec decodes everything
MAX_HEADER_BYTES = 256 * 1024
MAX_PARAMS = 256  # parameters per header, RFC 2231 segments per name
_HEADER_DETECTIONS = 8  # charset detections per header value; later fragments fall back
_REPLACEMENT = "\ufffd"


# --------------------------------------------------------------------------- ISO-2022-JP
class _JisError(ValueError):
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


def _decode_jis(data: bytes, strict: bool) -> str:
    out: list[str] = []

    def bad(what: str) -> None:
        if strict:
            raise _JisError(what)
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
    return _decode_jis(data, strict=False)


def _has_jis_escape(data: bytes) -> bool:
    return b"\x1b$" in data or b"\x1b(" in data


# --------------------------------------------------------------------------- labels
_LABEL_GROUPS: dict[str, str] = {
    # Shift_JIS labels mean the Windows repertoire in practice.
    "cp932": "shift_jis shift-jis sjis s-jis s_jis x-sjis x-shift-jis shiftjis csshiftjis"
    " ms_kanji ms-kanji mskanji windows-31j cswindows31j cp932 ms932 ibm-943 x-ms-cp932"
    " sjis-open sjis-win shift_jis-ms",
    "shift_jis_2004": "shift_jisx0213 shift_jis-2004 shift_jis_2004 sjis-2004",
    ISO2022JP: "iso-2022-jp iso2022jp iso_2022_jp csiso2022jp iso-2022-jp-1 iso-2022-jp-2"
    " csiso2022jp2 iso-2022-jp-3 iso-2022-jp-2004 iso-2022-jp-ext iso-2022-jp-ms cp50220"
    " cp50221 cp50222 jis x-jis jis7 iso2022_jp_2 iso2022_jp_ext",
    # euc_jis_2004 is a superset of the EUC-JP mailers emit, NEC row 13 included.
    "euc_jis_2004": "euc-jp eucjp euc_jp x-euc-jp x-euc ujis cseucpkdfmtjapanese euc-jp-ms"
    " eucjp-ms eucjp-win cp51932 euc-jis-2004 euc_jis_2004 euc-jisx0213",
    # Supersets that the legacy labels mean in practice (WHATWG Encoding Standard).
    "gb18030": "gb2312 gbk x-gbk cp936 csgb2312 gb_2312-80",
    "cp949": "ks_c_5601-1987 euc-kr euckr cseuckr ks_c_5601",
    "big5hkscs": "big5 csbig5 x-x-big5 big5-hkscs",
    "cp874": "windows-874 tis-620 iso-8859-11",
    "utf-8": "x-unicode20utf8 unicode-1-1-utf-8",
    "cp1252": "x-user-defined",
}
_LABELS = {label: codec for codec, labels in _LABEL_GROUPS.items() for label in labels.split()}
# Codecs that exist in Python but are not a charset a mail part can legitimately carry.
_NOT_CHARSETS = set(
    "idna punycode raw-unicode-escape unicode-escape undefined mbcs oem charmap utf-8-sig"
    " palmos".split()
)
_SINGLE_BYTE_PREFIXES = ("iso8859", "cp12", "cp8", "cp4", "latin", "koi8", "mac", "ascii", "tis")
_MULTI_BYTE = set(
    "cp932 shift_jis shift_jis_2004 euc_jis_2004 euc_jp gb18030 gb2312 gbk cp949 euc_kr big5"
    " big5hkscs cp950 johab hz".split()
)


def normalize_charset(label: str | None) -> str | None:
    """The Python codec to use for a MIME charset label (``"iso-2022-jp"`` is handled by
    :func:`decode_iso2022jp`), or None for an unknown or non-text label."""
    if not label:
        return None
    key = label.strip().strip("\"'").strip().lower()
    key = key.split("*", 1)[0]  # RFC 2231 language suffix inside RFC 2047 (charset*lang)
    if not key or len(key) > 64:
        return None
    if key in _LABELS:
        return _LABELS[key]
    if key.replace("_", "-") in _LABELS:
        return _LABELS[key.replace("_", "-")]
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    name = info.name
    if name.startswith("iso2022_jp"):
        return ISO2022JP
    if name in ("shift_jis", "cp932"):
        return "cp932"
    if name in ("euc_jp", "euc_jisx0213", "euc_jis_2004"):
        return "euc_jis_2004"
    return _LABELS.get(name, name)


# --------------------------------------------------------------------------- bytes
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Stateful 7-bit encodings whose streams must not be read as ISO-2022-JP.
_OTHER_7BIT = {"utf-7", "iso2022_kr", "hz"}
# Detection candidates: the Japanese encodings first, then UTF-8 and the Latin family.
_DETECT_CANDIDATES = ["cp932", "euc_jis_2004", "utf_8", "cp1252", "iso8859_1"]


def _strict(data: bytes, codec: str) -> str | None:
    try:
        if codec == ISO2022JP:
            if not data.isascii():
                return None
            return _decode_jis(data, strict=True)
        return data.decode(codec)
    except (UnicodeError, _JisError, LookupError):
        return None


def _utf8_beats(data: bytes, codec: str) -> str | None:
    """UTF-8 text under a legacy label (labels lie): the UTF-8 reading, when it is convincing.

    Legacy Japanese text is almost never valid UTF-8 beyond a couple of characters, whereas
    cp932/euc readings of UTF-8 often "succeed" as mojibake.
    """
    if data.isascii():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if codec.startswith(_SINGLE_BYTE_PREFIXES):
        return text
    if codec in _MULTI_BYTE:
        wide = [c for c in text if ord(c) >= 0x80]
        if len(wide) >= 2 and any(ord(c) >= 0x800 for c in wide):
            return text
    return None


def _detect(data: bytes, candidates: list[str] | None) -> str | None:
    """A codec for 8-bit data without a usable label, judged on a bounded prefix."""
    prefix = data[:DETECT_PREFIX]
    if len(data) > DETECT_PREFIX:
        # Cut at a line end so the sample does not end inside a multibyte character.
        nl = prefix.rfind(b"\n")
        if nl > DETECT_PREFIX // 2:
            prefix = prefix[: nl + 1]
    try:
        best = from_bytes(prefix, cp_isolation=candidates).best()
    except Exception:  # detection is advisory; a library hiccup must not fail the part
        return None
    if best is None:
        return None
    return normalize_charset(best.encoding)


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str]:
    """Decode ``data`` to text; returns (text, charset actually used). Never raises.

    Order: BOM; ISO-2022-JP escapes in 7-bit data; the declared label when it decodes
    strictly (and UTF-8 does not convincingly beat it); UTF-8; detection (a bounded prefix);
    declared with replacement.
    """
    return _decode_total(data, declared, detect=True)


def _decode_total(data: bytes, declared: str | None, detect: bool) -> tuple[str, str]:
    try:
        return _decode_bytes(data, declared, detect)
    except Exception:  # total by contract; a codec bug must not crash the pipeline
        return data.decode("utf-8", "replace"), "utf-8"


def _decode_bytes(data: bytes, declared: str | None, detect: bool) -> tuple[str, str]:
    for bom, bom_codec in _BOMS:
        if data.startswith(bom):
            return data.decode(bom_codec, "replace"), bom_codec.removesuffix("-sig")
    codec = normalize_charset(declared)
    if codec not in _OTHER_7BIT and data.isascii() and _has_jis_escape(data):
        # JIS designations in 7-bit data: ISO-2022-JP whatever the label says (us-ascii,
        # none, ...), and decoded leniently when damaged rather than passed on as raw ESC.
        return decode_iso2022jp(data), ISO2022JP
    if codec is not None:
        text = _utf8_beats(data, codec)
        if text is not None:
            return text, "utf-8"
        text = _strict(data, codec)
        if text is not None:
            return text, codec
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    detected: str | None = None
    # Japanese (and Latin) first; only when none of those fits, anything charset-normalizer knows.
    for candidates in (_DETECT_CANDIDATES, None) if detect else ():
        guess = _detect(data, candidates)
        detected = detected or guess
        text = _strict(data, guess) if guess else None
        if guess and text is not None:
            return text, guess
    fallback = codec or detected or "utf-8"
    if fallback == ISO2022JP:
        return decode_iso2022jp(data), ISO2022JP
    return data.decode(fallback, "replace"), fallback


# --------------------------------------------------------------------------- headers
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_WSP_ONLY = re.compile(rb"[ \t\r\n]*")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_NEWLINES = re.compile("[\r\n]+")
_ODD_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _to_bytes(raw: str) -> bytes:
    """The header's original bytes: BytesParser keeps 8-bit bytes as surrogateescapes."""
    try:
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _ODD_SURROGATES.sub(_REPLACEMENT, raw).encode("utf-8", "surrogateescape")


def _clean(text: str) -> str:
    return _CONTROLS.sub("", _NEWLINES.sub(" ", text))


def _b64(text: bytes) -> bytes:
    text = _B64_JUNK.sub(b"", text)
    if len(text) % 4 == 1:
        text = text[:-1]  # a lone sextet carries no whole byte
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except binascii.Error:
        return b""


def _q(text: bytes) -> bytes:
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))


def _run_key(label: bytes) -> str:
    codec = normalize_charset(label.decode("ascii", "replace"))
    return codec if codec is not None else "?" + label.decode("ascii", "replace").lower()


class _HeaderDecoder:
    """One header value's decoding: detection runs a bounded number of times per value (a
    hostile header can hold thousands of 8-bit fragments), and all raw 8-bit fragments share
    one charset guess made on all of them together."""

    def __init__(self) -> None:
        self.detections = _HEADER_DETECTIONS
        self.raw_charset: str | None = None

    def decode(self, data: bytes, declared: str | None) -> str:
        if data.isascii():
            return _decode_total(data, declared, detect=False)[0]
        self.detections -= 1
        return _decode_total(data, declared, detect=self.detections >= 0)[0]

    def words(self, words: list[tuple[bytes, bytes, bytes]]) -> str:
        """Adjacent encoded-words, joined at the byte level per charset run: senders split
        multibyte characters, escape sequences and even base64 quanta across words."""
        out: list[str] = []
        i = 0
        while i < len(words):
            key = _run_key(words[i][0])
            buf = bytearray()
            carry = b""  # base64 text that is not yet a whole 4-character quantum
            while i < len(words) and _run_key(words[i][0]) == key:
                _, kind, payload = words[i]
                if kind in b"bB":
                    text = carry + _B64_JUNK.sub(b"", payload)
                    if b"=" in payload:  # padded: this word ends its own quanta
                        buf += _b64(text)
                        carry = b""
                    else:
                        whole = len(text) - len(text) % 4
                        buf += _b64(text[:whole])
                        carry = text[whole:]
                else:
                    buf += _b64(carry) + _q(payload)
                    carry = b""
                i += 1
            buf += _b64(carry)
            out.append(self.decode(bytes(buf), key.removeprefix("?")))
        return "".join(out)

    def raw(self, chunk: bytes) -> str:
        if chunk.isascii() and b"\x1b" not in chunk:
            return chunk.decode("ascii")
        return self.decode(chunk, self.raw_charset)

    def header(self, data: bytes) -> str:
        data = _FOLD.sub(b"", data[:MAX_HEADER_BYTES])
        # Tokens: raw text (bytes) and runs of encoded-words separated only by whitespace.
        tokens: list[bytes | list[tuple[bytes, bytes, bytes]]] = []
        pos = 0
        for m in _ENCODED_WORD.finditer(data):
            gap = data[pos : m.start()]
            last = tokens[-1] if tokens else None
            word = (m.group(1), m.group(2), m.group(3))
            if isinstance(last, list) and _WSP_ONLY.fullmatch(gap):
                last.append(word)  # whitespace between words is not text (RFC 2047 §6.2)
            else:
                tokens += [gap, [word]]
            pos = m.end()
        tokens.append(data[pos:])
        eight_bit = [t for t in tokens if isinstance(t, bytes) and not t.isascii()]
        if eight_bit:
            self.raw_charset = _decode_total(b" ".join(eight_bit), None, detect=True)[1]
        text = "".join(self.raw(t) if isinstance(t, bytes) else self.words(t) for t in tokens)
        return _clean(text).strip()


def decode_header_value(raw: str) -> str:
    """A raw header value (as BytesParser stores it) decoded to clean text. Never raises."""
    try:
        return _HeaderDecoder().header(_to_bytes(raw[:MAX_HEADER_BYTES]))
    except Exception:  # total by contract
        return _clean(raw[:MAX_HEADER_BYTES].encode("utf-8", "replace").decode("utf-8")).strip()


def decode_address_list(raw: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header. The list is split while names are
    still encoded, so a decoded name containing "," or "<" cannot change the structure."""
    value = _FOLD.sub(b"", _to_bytes(raw[:MAX_HEADER_BYTES])).decode("utf-8", "surrogateescape")
    try:
        pairs = getaddresses([value])[:MAX_PARAMS]
    except Exception:  # total by contract: an unparseable list is one undecoded name
        pairs = [(value, "")]
    return [(decode_header_value(name), decode_header_value(addr)) for name, addr in pairs]


# --------------------------------------------------------------------------- file names
_PARAM_NAME = re.compile(r"^([^*]+)(?:\*(\d{1,4}))?(\*)?$")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _params(value: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, value) of each parameter after the first ``;``; quotes removed.

    Lenient: unquoted values may contain spaces, unterminated quotes run to the end, and a
    backslash after an 8-bit byte is the second byte of a Shift_JIS character, not an escape.
    """
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(value)
    in_quote = False
    while i < n and (in_quote or value[i] != 0x3B):  # skip the type/disposition token
        if value[i] == 0x22:
            in_quote = not in_quote
        i += 1
    while i < n and len(out) < MAX_PARAMS:
        while i < n and value[i] in b"; \t\r\n":
            i += 1
        start = i
        while i < n and value[i] not in b"=;":
            i += 1
        name = value[start:i].strip().lower().decode("ascii", "replace")
        if i >= n or value[i] != 0x3D:
            continue
        i += 1
        while i < n and value[i] in b" \t\r\n":
            i += 1
        if i < n and value[i] == 0x22:
            i += 1
            buf = bytearray()
            while i < n and value[i] != 0x22:
                b = value[i]
                if b == 0x5C and i + 1 < n and not (buf and buf[-1] >= 0x80):
                    i += 1
                    b = value[i]
                buf.append(b)
                i += 1
            i += 1
            out.append((name, bytes(buf)))
        else:
            start = i
            while i < n and value[i] != 0x3B:
                i += 1
            out.append((name, value[start:i].strip()))
    return out


def _rfc2231(segments: list[tuple[int, bool, bytes]]) -> str:
    data = bytearray()
    charset: str | None = None
    seen: set[int] = set()
    for index, extended, raw in sorted(segments, key=lambda s: s[0]):
        if index in seen:
            continue
        seen.add(index)
        if extended:
            if index == 0 and raw.count(b"'") >= 2:
                label, _lang, raw = raw.split(b"'", 2)
                charset = label.decode("ascii", "replace") or None
            raw = _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
        data += raw
    text = decode_bytes(bytes(data), charset)[0]
    if "=?" in text:  # some mailers put RFC 2047 words inside RFC 2231 values
        return decode_header_value(text)
    return _clean(text).strip()


def _filename_from(value: bytes, base: str) -> str | None:
    plain: bytes | None = None
    segments: list[tuple[int, bool, bytes]] = []
    for name, val in _params(value):
        m = _PARAM_NAME.match(name)
        if not m or m.group(1).strip() != base:
            continue
        index, extended = m.group(2), m.group(3) is not None
        if index is None and not extended:
            if plain is None:
                plain = val
        elif len(segments) < MAX_PARAMS:
            segments.append((int(index or 0), extended, val))
    if segments:
        text = _rfc2231(segments)
        if text:
            return text
    if plain is not None:
        text = _HeaderDecoder().header(plain)
        if text:
            return text
    return None


def part_filename(part: Message) -> str | None:
    """The attachment's file name (Content-Disposition filename, else Content-Type name),
    decoded from the raw header, or None. Path parts are left for the rebuild to remove."""
    raw: dict[str, bytes] = {}
    for name, value in part.raw_items():
        key = name.strip().lower()
        if key in ("content-disposition", "content-type") and key not in raw:
            raw[key] = _FOLD.sub(b"", _to_bytes(str(value)[:MAX_HEADER_BYTES]))
    try:
        for header, base in (("content-disposition", "filename"), ("content-type", "name")):
            if header in raw:
                found = _filename_from(raw[header], base)
                if found:
                    return found
    except Exception:  # total by contract; an unreadable name is an absent name
        return None
    return None
