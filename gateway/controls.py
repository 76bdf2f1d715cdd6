"""Invisible and reordering characters in untrusted text, spelled out where people read it.

One rule for every place that shows a sender's text to a person or a machine that shows it
to a person (the console, the monthly CSV opened in Excel, syslog lines read in a SIEM):
control characters (Cc, C0 and C1), format characters (Cf: bidi overrides, zero-width
characters, the BOM), line and paragraph separators (Zl, Zp), surrogates, private-use and
unassigned code points become ``⟨U+XXXX⟩`` in logical order. Nothing can then reorder the
line, hide a part of it or start a new record. Names (file, member and display names, header
lines) are cleaned instead, the same characters removed, by :func:`strip_hidden`: the one
cleaner every naming site uses, so no copy can drift to a weaker rule.
"""

from __future__ import annotations

import unicodedata

HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cs", "Cn"})
_BREAKS = frozenset("\t\r\n\u2028\u2029")


def is_hidden(ch: str) -> bool:
    return unicodedata.category(ch) in HIDDEN_CATEGORIES


def strip_hidden(text: str, *, breaks: str = "") -> str:
    """``text`` without its hidden characters; tab, CR, LF, U+2028 and U+2029 become
    ``breaks`` instead (a space keeps the words of a folded line apart)."""
    if text.isprintable():
        return text  # the common case (isprintable is false for every hidden category)
    return "".join((breaks if ch in _BREAKS else "") if is_hidden(ch) else ch for ch in text)


def visible(text: str) -> str:
    """``text`` with every invisible or reordering character spelled out as ``⟨U+XXXX⟩``."""
    if text.isprintable() and not any(unicodedata.category(c) == "Cf" for c in text):
        return text  # the common case, checked cheaply (isprintable is false for Cc, Zl, Zp...)
    return "".join(f"⟨U+{ord(ch):04X}⟩" if is_hidden(ch) else ch for ch in text)
