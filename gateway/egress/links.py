"""What a mail client, preview pane or OS would turn into a link (the checker's own rules).

Independent of ``gateway.mime.defang`` by design: a second, differently written reading of
"live link" over the text exactly as the recipient gets it (NFKC-folded, since a browser
folds fullwidth forms in host names).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

from publicsuffixlist import PublicSuffixList

# Scheme names the gateway writes in place of live ones.
_DEAD_SCHEMES: Final = frozenset({"hxxp", "hxxps", "fxp", "fxps", "sfxp"})
# Handler schemes live even without "//" (a subset the checker insists on).
_LIVE_OPAQUE: Final = frozenset(
    {
        "http", "https", "ftp", "file", "smb", "javascript", "vbscript", "data", "mhtml",
        "search-ms", "shell", "hcp", "its", "ms-its", "jar", "view-source",
    }
)  # fmt: skip
_SCHEME_SLASH_RE: Final = re.compile(r"(?<![a-z0-9+.\-])([a-z0-9+.\-]+):[/\\]", re.I)
_OPAQUE_RE: Final = re.compile(r"(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*):(?=[^\s\[/\\])", re.I)
_UNC_RE: Final = re.compile(r"(?<![\[\\\w/:\]])\\\\[\w.\-$]+[\\/]")
_WWW_RE: Final = re.compile(r"(?<![a-z0-9@._\-])www\d{0,3}\.[\w\-]", re.I)
# The top-level label: ASCII, or letters of any script (".コム", ".рф" are public suffixes).
_HOST_RE: Final = re.compile(
    r"(?<![\w@.\-])(?:[\w\-]+\.)+"
    r"(?:([a-z]{2,63})(?![a-z0-9@_\-])|([^\W\d_]{2,63})(?![\w@\-]))",
    re.I,
)
# An IPv4 address with a path or port after it; octets are range-checked in code below.
_QUAD_RE: Final = re.compile(
    r"(?<![\w.\-])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?=[/\\]|:\d)", re.A
)
_PSL: Final = PublicSuffixList(only_icann=True)


@functools.lru_cache(maxsize=4096)
def _public(tld: str) -> bool:
    return _PSL.publicsuffix(tld.lower(), accept_unknown=False) is not None


def live_links(text: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` live links found in ``text`` (empty: nothing a client would link)."""
    folded = unicodedata.normalize("NFKC", text)
    found: list[str] = []

    def add(s: str) -> bool:
        found.append(s[:80])
        return len(found) >= limit

    for m in _SCHEME_SLASH_RE.finditer(folded):
        # A scheme starts with a letter (RFC 3986): "..." folded from "…" is not part of it.
        name = m.group(1).lower().lstrip("0123456789+.-")
        drive = len(name) == 1 and name.isalpha()  # "C:\\Users" is a path, not a link
        # A scheme has letters: "4:/" (from "¼:/" folded) names no handler.
        scheme = any(c.isalpha() for c in name)
        if scheme and not drive and name not in _DEAD_SCHEMES and add(m.group(0)):
            return found
    for m in _OPAQUE_RE.finditer(folded):
        name = m.group(1).lower()
        if (name in _LIVE_OPAQUE or name.startswith("ms-")) and add(m.group(0)):
            return found
    for m in _UNC_RE.finditer(folded):
        if add(m.group(0)):
            return found
    for m in _WWW_RE.finditer(folded):
        if add(m.group(0)):
            return found
    for m in _HOST_RE.finditer(folded):
        if _public(m.group(1) or m.group(2)) and add(m.group(0)):
            return found
    for m in _QUAD_RE.finditer(folded):
        if all(int(octet) <= 255 for octet in m.groups()) and add(m.group(0)):
            return found
    return found


_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})


def hidden_characters(text: str) -> list[str]:
    """Controls and format characters (bidi, zero-width) left in delivered text."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in "\t\n\r" or (ch == "\ufeff" and i == 0):
            continue
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            out.append(f"U+{ord(ch):04X}")
            if len(out) >= 5:
                break
    return out
