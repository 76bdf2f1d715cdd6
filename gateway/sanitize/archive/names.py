"""Member names: legacy (non-UTF-8) byte names, and paths that try to leave the root.

Names without a UTF-8 flag are decoded as CP932 from their raw bytes, so the 0x5C trail
byte of 表/ソ/能 is never taken for a path separator.
"""

from __future__ import annotations

import re

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def decode_legacy_name(raw: bytes) -> str:
    """Names without the UTF-8 flag: ASCII, else UTF-8 (macOS), else CP932, else cp437."""
    for codec in ("ascii", "utf-8", "cp932"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("cp437")


def logical_name(name: str) -> tuple[str, bool]:
    """Normalized "/"-path and whether it tries to leave the extraction root."""
    n = name.replace("\\", "/")
    parts = n.split("/")
    unsafe = n.startswith("/") or bool(_DRIVE_RE.match(n)) or ".." in parts
    clean = "/".join(p for p in parts if p not in ("", "."))
    return (clean or "unnamed"), unsafe
