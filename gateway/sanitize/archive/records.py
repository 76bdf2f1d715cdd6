"""The ``unpack_child`` record stream (7z, TNEF): one JSON line per entry, then its bytes.

The child parsed hostile input, so every field is bounded and re-checked here.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gateway.errors import ArchiveLimit, ConversionFailed, Encrypted, PartRefused
from gateway.sanitize.archive.entry import PPAP_DETAIL, Entry
from gateway.sanitize.archive.names import logical_name

RECORD_LINE_MAX = 8192
_NAME_MAX = 4096
_RECORD_KINDS = frozenset({"file", "link", "special", "duplicate"})


def parse_records(
    out: bytes,
    max_entries: int,
    take: Callable[[int], None],
    *,
    what: str,
    check_names: bool = True,
) -> list[Entry]:
    """Entries from an ``unpack_child`` record stream, every field bounded and re-checked;
    ``take(size)`` charges a member's size before its bytes are believed."""
    entries: list[Entry] = []
    names: set[str] = set()
    pos = 0
    while True:
        nl = out.find(b"\n", pos, pos + RECORD_LINE_MAX)
        if nl < 0:
            raise ConversionFailed(f"{what} unpacker output truncated or malformed")
        try:
            record = json.loads(out[pos:nl])
        except ValueError:
            raise ConversionFailed(f"{what} unpacker output malformed") from None
        pos = nl + 1
        if not isinstance(record, dict):
            raise ConversionFailed(f"{what} unpacker output malformed")
        if record.get("end") is True and len(record) == 1:
            if pos != len(out):
                raise ConversionFailed(f"{what} unpacker wrote past its end")
            return entries
        error = record.get("error")
        if error is not None:
            if error == "encrypted":
                raise Encrypted(PPAP_DETAIL)
            if error in ("bomb", "too_many"):
                raise ArchiveLimit(f"{what} archive over the limits ({error})")
            raise ConversionFailed(f"unreadable {what} archive")
        name, kind, size = record.get("name"), record.get("kind"), record.get("size")
        if (
            set(record) != {"name", "kind", "size"}
            or not isinstance(name, str)
            or not 0 < len(name) <= _NAME_MAX
            or kind not in _RECORD_KINDS
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or (kind != "file" and size != 0)
        ):
            raise ConversionFailed(f"{what} unpacker sent an invalid record")
        if len(entries) >= max_entries:
            raise ArchiveLimit(f"too many entries in the {what} archive")
        if kind == "file":
            take(size)  # before the bytes are believed
            if pos + size > len(out):
                raise ConversionFailed(f"{what} unpacker output truncated")
            content = out[pos : pos + size]
            pos += size
            if check_names and (logical_name(name)[1] or name in names):
                entries.append(Entry(name, "refused", refusal=PartRefused("unsafe name")))
            else:
                entries.append(Entry(name, "file", lambda c=content: c))  # type: ignore[misc]
            names.add(name)
        elif kind == "duplicate":
            entries.append(Entry(name, "refused", refusal=PartRefused("unsafe name")))
        else:
            entries.append(Entry(name, kind))
