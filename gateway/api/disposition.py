"""Safe Content-Disposition for downloads (RFC 6266 with an RFC 5987 ``filename*``).

Names come from untrusted mail: control, format (bidi) and separator characters, quotes,
backslashes and path parts are removed so no header can be injected or a name spoofed.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from gateway.controls import strip_hidden

_MAX_CHARS = 150
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")


def safe_filename(name: str, fallback: str = "download") -> str:
    name = unicodedata.normalize("NFC", name[:1000])
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Hidden characters go; so do spaces other than U+0020 (no NBSP or U+3000 in a header).
    name = strip_hidden(name)
    name = "".join(ch for ch in name if ch == " " or unicodedata.category(ch) != "Zs")
    name = name.replace('"', "").strip(" .")[:_MAX_CHARS].strip(" .")
    return name or fallback


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    name = safe_filename(filename)
    ascii_name = _ASCII_UNSAFE.sub("_", name).strip(" .") or "download"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
