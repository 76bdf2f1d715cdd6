"""Header values and attachment file names: RFC 2047 encoded-words and RFC 2231 parameters,
decoded the Japanese-correct way (``email`` leaves CP50220 encoded-words undecoded).

Everything here is total: bad input degrades to U+FFFD, never to an exception, and work is
bounded (header size, parameter count, charset detections per value).
"""

from __future__ import annotations

import binascii
import re
from email.message import Message
from email.utils import getaddresses

from gateway.mime.charset import decode_bytes, normalize_charset

__all__ = ["decode_header_value", "decode_address_list", "part_filename"]

MAX_HEADER_BYTES = 256 * 1024
MAX_PARAMS = 256  # parameters per header, RFC 2231 segments per name
_HEADER_DETECTIONS = 8  # charset detections per header value; later fragments fall back
_REPLACEMENT = "\ufffd"


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
            return decode_bytes(data, declared, detect=False)[0]
        self.detections -= 1
        return decode_bytes(data, declared, detect=self.detections >= 0)[0]

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
            self.raw_charset = decode_bytes(b" ".join(eight_bit), None)[1]
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
