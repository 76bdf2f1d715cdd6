"""Japanese-correct charset choice and decoding of bodies (and of header bytes, for
``gateway.mime.headers``).

Labels lie: a declared charset is trusted only when it decodes strictly and UTF-8 does not
convincingly beat it; ISO-2022-JP escapes win whatever the label says. Everything here is
total: bad input degrades to U+FFFD for bytes that are really invalid, never to an exception,
and work is bounded.
"""

from __future__ import annotations

import codecs

from charset_normalizer import from_bytes

from gateway.mime.jis import JisError, decode_iso2022jp, decode_jis, has_jis_escape

__all__ = ["ISO2022JP", "normalize_charset", "decode_bytes"]

ISO2022JP = "iso-2022-jp"
DETECT_PREFIX = 64 * 1024  # detection looks at this much; the chosen codec decodes everything


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
            return decode_jis(data, strict=True)
        return data.decode(codec)
    except (UnicodeError, JisError, LookupError):
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


def decode_bytes(data: bytes, declared: str | None, *, detect: bool = True) -> tuple[str, str]:
    """Decode ``data`` to text; returns (text, charset actually used). Never raises.

    Order: BOM; ISO-2022-JP escapes in 7-bit data; the declared label when it decodes
    strictly (and UTF-8 does not convincingly beat it); UTF-8; detection (a bounded prefix,
    skipped when ``detect`` is false: header decoding rations it); declared with replacement.
    """
    try:
        return _decode_bytes(data, declared, detect)
    except Exception:  # total by contract; a codec bug must not crash the pipeline
        return data.decode("utf-8", "replace"), "utf-8"


def _decode_bytes(data: bytes, declared: str | None, detect: bool) -> tuple[str, str]:
    for bom, bom_codec in _BOMS:
        if data.startswith(bom):
            return data.decode(bom_codec, "replace"), bom_codec.removesuffix("-sig")
    codec = normalize_charset(declared)
    if codec not in _OTHER_7BIT and data.isascii() and has_jis_escape(data):
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
