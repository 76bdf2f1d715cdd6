"""Display safety for untrusted strings on the console's screens.

A right-to-left override turns ``請求書\\u202efdp.exe`` into what reads as "請求書exe.pdf", on
the very screen where someone decides whether to release it. Every format character (bidi
controls, zero-width characters, the BOM: Unicode category Cf), control character (Cc) and
line or paragraph separator (Zl, Zp) is therefore shown as its code point, ``⟨U+202E⟩``, in
logical order; nothing invisible or reordering remains. The stored value is not changed: the
API returns it as received (forensics), the console shows this form.
"""

from __future__ import annotations

import unicodedata

_HIDDEN = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cs", "Cn"})
_MAX_EXT = 16


def _shown(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩" if unicodedata.category(ch) in _HIDDEN else ch


def visible(text: str) -> str:
    """``text`` with every invisible or reordering character spelled out as ``⟨U+XXXX⟩``."""
    if text.isprintable() and not any(unicodedata.category(c) == "Cf" for c in text):
        return text  # the common case, checked cheaply
    return "".join(_shown(ch) for ch in text)


def real_extension(name: str) -> str:
    """The extension a file name really ends with (logical order, invisible characters
    removed), lower-cased with its dot, e.g. ``.exe`` for ``請求書\\u202efdp.exe``; "" if none."""
    clean = "".join(ch for ch in name if unicodedata.category(ch) not in _HIDDEN).strip()
    stem, dot, ext = clean.rpartition(".")
    if not dot or not stem or not ext or len(ext) > _MAX_EXT or not ext.isalnum():
        return ""
    return "." + ext.lower()
