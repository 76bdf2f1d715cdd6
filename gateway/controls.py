"""Invisible and reordering characters in untrusted text, spelled out where people read it.

One rule for every place that shows a sender's text to a person or a machine that shows it
to a person (the console, the monthly CSV opened in Excel, syslog lines read in a SIEM):
control characters (Cc, C0 and C1), format characters (Cf: bidi overrides, zero-width
characters, the BOM), line and paragraph separators (Zl, Zp), surrogates, private-use and
unassigned code points become ``⟨U+XXXX⟩`` in logical order. Nothing can then reorder the
line, hide a part of it or start a new record. File *names* on delivered parts are cleaned
(removed, not spelled out) by ``gateway/sanitize/names.py`` with the same categories.
"""

from __future__ import annotations

import unicodedata

HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cs", "Cn"})


def is_hidden(ch: str) -> bool:
    return unicodedata.category(ch) in HIDDEN_CATEGORIES


def visible(text: str) -> str:
    """``text`` with every invisible or reordering character spelled out as ``⟨U+XXXX⟩``."""
    if text.isprintable() and not any(unicodedata.category(c) == "Cf" for c in text):
        return text  # the common case, checked cheaply (isprintable is false for Cc, Zl, Zp...)
    return "".join(f"⟨U+{ord(ch):04X}⟩" if is_hidden(ch) else ch for ch in text)
