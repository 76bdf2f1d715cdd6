"""Display safety for untrusted strings on the console's screens.

A right-to-left override turns ``請求書\\u202efdp.exe`` into what reads as "請求書exe.pdf", on
the very screen where someone decides whether to release it. Every format character (bidi
controls, zero-width characters, the BOM: Unicode category Cf), control character (Cc) and
line or paragraph separator (Zl, Zp) is therefore shown as its code point, ``⟨U+202E⟩``, in
logical order; nothing invisible or reordering remains. The stored value is not changed: the
API returns it as received (forensics), the console shows this form.
"""

from __future__ import annotations

from gateway.controls import strip_hidden, visible

__all__ = ["real_extension", "visible"]
_MAX_EXT = 16


def real_extension(name: str) -> str:
    """The extension a file name really ends with (logical order, invisible characters
    removed), lower-cased with its dot, e.g. ``.exe`` for ``請求書\\u202efdp.exe``; "" if none."""
    clean = strip_hidden(name).strip()
    stem, dot, ext = clean.rpartition(".")
    if not dot or not stem or not ext or len(ext) > _MAX_EXT or not ext.isalnum():
        return ""
    return "." + ext.lower()
