"""Output file names: the original stem with a new extension, made harmless."""

from __future__ import annotations

import unicodedata

from gateway.controls import strip_hidden
from gateway.mime.defang import disarm

_MAX_STEM_CHARS = 100
_FALLBACK = "attachment"
# Characters that mean something to file systems or mail clients.
_RESERVED = frozenset('<>:"/\\|?*')


def _clean_char(ch: str) -> str:
    if ch in _RESERVED:
        return "_"
    return " " if unicodedata.category(ch) == "Zs" else ch


def clean_name(filename: str, new_ext: str) -> str:
    """``見積書.docm`` → ``見積書.pdf``: path parts, control and bidi characters removed,
    length bounded, empty ⇒ ``attachment``, host names disarmed (``www[.]x[.]com.pdf``).
    ``new_ext`` is given without the dot."""
    name = unicodedata.normalize("NFC", filename or "")
    # Both separators: Windows senders put backslashes in names.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    # Hidden characters first: bidi controls (RLO, isolates) would let "exe.pdf" read as
    # "fdp.exe", zero-width ones hide a part of the name.
    stem = "".join(_clean_char(ch) for ch in strip_hidden(stem))
    stem = " ".join(stem.split())  # collapse runs of spaces
    stem = stem.strip(" .")  # no hidden files, no trailing dots (Windows)
    stem = stem[:_MAX_STEM_CHARS].rstrip(" .")
    if not stem:
        stem = _FALLBACK
    # Last: "www.evil-corp.me" shown as a part name must not be a link (dots bracketed).
    stem = disarm(stem).text
    ext = "".join(ch for ch in new_ext.lstrip(".") if ch.isascii() and ch.isalnum()).lower()
    if ext and disarm(f"{stem}.{ext}").text != f"{stem}.{ext}":
        # The stem and the extension together read as a host ("www" + ".txt"): keep them apart.
        stem += "_"
    return f"{stem}.{ext}" if ext else stem
