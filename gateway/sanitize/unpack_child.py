"""Runs INSIDE the jail: unpacks untrusted 7z archives (py7zr and its C codecs) and TNEF.

Usage (archive on stdin, records on stdout)::

    python -I -m gateway.sanitize.unpack_child 7z MAX_ENTRIES MAX_BYTES
    python -I -m gateway.sanitize.unpack_child tnef MAX_ENTRIES MAX_BYTES

Output: one record per entry, each a JSON header line ``{"name", "kind", "size"}`` followed, for
``kind == "file"``, by exactly ``size`` bytes of content; then a final line ``{"end": true}``,
or ``{"error": "encrypted" | "too_many" | "bomb" | "unreadable", "detail": ...}``. Nothing
here is trusted by the parent (``archive.py``), which re-checks every name, kind and size
against its own budgets before believing any of it.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any


def _line(out: IO[bytes], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, ensure_ascii=True).encode() + b"\n")


def sevenzip(data: bytes, max_entries: int, max_bytes: int, out: IO[bytes]) -> int:
    import py7zr
    from py7zr.exceptions import PasswordRequired
    from py7zr.io import Py7zIO, WriterFactory

    used = [0]

    class _Sink(Py7zIO):
        def __init__(self) -> None:
            self.buf = bytearray()

        def write(self, s: bytes | bytearray) -> int:
            used[0] += len(s)
            if used[0] > max_bytes:
                raise OverflowError("unpacked size over the limit")
            self.buf += s
            return len(s)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def flush(self) -> None:
            return None

        def size(self) -> int:
            return len(self.buf)

    class _Factory(WriterFactory):
        def __init__(self) -> None:
            self.sinks: list[_Sink] = []

        def create(self, filename: str) -> _Sink:
            sink = _Sink()
            self.sinks.append(sink)
            return sink

    import io

    try:
        with py7zr.SevenZipFile(io.BytesIO(data), mode="r", max_extract_size=max_bytes) as zf:
            if zf.needs_password():
                _line(out, {"error": "encrypted"})
                return 0
            members = list(zf.files)
            if len(members) > max_entries:
                _line(out, {"error": "too_many", "detail": len(members)})
                return 0
            records: list[tuple[str, str]] = []
            targets: list[str] = []
            for m in members:
                name = str(m.filename)
                if m.is_directory:
                    continue
                if m.is_symlink or getattr(m, "is_junction", False):
                    records.append((name, "link"))
                elif m.is_socket:
                    records.append((name, "special"))
                elif name in targets:
                    records.append((name, "duplicate"))
                else:
                    targets.append(name)
            factory = _Factory()
            if targets:
                zf.extract(targets=targets, factory=factory)
    except PasswordRequired:
        _line(out, {"error": "encrypted"})
        return 0
    except OverflowError:
        _line(out, {"error": "bomb"})
        return 0
    except Exception as exc:  # noqa: BLE001 - py7zr raises many kinds on corrupt input
        kind = "bomb" if type(exc).__name__ == "DecompressionBombError" else "unreadable"
        _line(out, {"error": kind, "detail": type(exc).__name__[:60]})
        return 0
    if len(factory.sinks) != len(targets):
        _line(out, {"error": "unreadable", "detail": "member count mismatch"})
        return 0
    for name, kind in records:
        _line(out, {"name": name, "kind": kind, "size": 0})
    for name, sink in zip(targets, factory.sinks, strict=True):
        _line(out, {"name": name, "kind": "file", "size": len(sink.buf)})
        out.write(sink.buf)
    _line(out, {"end": True})
    return 0


# --- TNEF (winmail.dat) -------------------------------------------------------------------


def tnef(data: bytes, max_entries: int, max_bytes: int, out: IO[bytes]) -> int:
    import logging

    import tnefparse

    logging.getLogger("tnefparse").setLevel(logging.ERROR)
    try:
        parsed = tnefparse.TNEF(data, do_checksum=False)
        members: list[tuple[str, bytes]] = []
        for i, att in enumerate(parsed.attachments, start=1):
            content = att.data if isinstance(att.data, bytes) else b""
            members.append((_attachment_name(att, i), content))
        members.extend(_bodies(parsed))
    except Exception as exc:  # noqa: BLE001 - tnefparse raises all sorts on malformed input
        _line(out, {"error": "unreadable", "detail": type(exc).__name__[:60]})
        return 0
    if len(members) > max_entries:
        _line(out, {"error": "too_many", "detail": len(members)})
        return 0
    if sum(len(c) for _, c in members) > max_bytes:
        _line(out, {"error": "bomb"})
        return 0
    for name, content in members:
        _line(out, {"name": name[:255] or "attachment.dat", "kind": "file", "size": len(content)})
        out.write(content)
    _line(out, {"end": True})
    return 0


def _attachment_name(att: object, i: int) -> str:
    try:
        name = att.long_filename()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        name = None
    if isinstance(name, bytes):
        name = _decode(name, getattr(att, "codepage", None))
    if not isinstance(name, str) or not name.strip("\x00 "):
        raw = getattr(att, "_name", b"")
        name = _decode(raw, getattr(att, "codepage", None)) if isinstance(raw, bytes) else raw
    name = str(name or "").strip("\x00 ")
    return name or f"attachment{i}.dat"


def _decode(raw: bytes, codepage: object) -> str:
    for codec in (str(codepage) if codepage else "cp1252", "utf-8", "cp932"):
        try:
            return raw.decode(codec).strip("\x00")
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1").strip("\x00")


def _bodies(parsed: object) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    try:  # compressed RTF is decoded lazily and may be garbage: keep the attachments then
        rtf = parsed.rtfbody if getattr(parsed, "_rtfbody", None) else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        rtf = None
    if isinstance(rtf, bytes) and rtf.lstrip().startswith(b"{\\rt"):
        out.append(("body.rtf", rtf))  # only when it really decompressed to RTF
    html = getattr(parsed, "htmlbody", None)
    if html:
        out.append(("body.html", html.encode("utf-8") if isinstance(html, str) else html))
    if not out:
        body = getattr(parsed, "body", None)
        if body:
            out.append(("body.txt", body.encode("utf-8") if isinstance(body, str) else body))
    return out


_COMMANDS = {"7z": sevenzip, "tnef": tnef}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in _COMMANDS:
        print("usage: unpack_child 7z|tnef MAX_ENTRIES MAX_BYTES", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    code = _COMMANDS[argv[1]](data, int(argv[2]), int(argv[3]), out)
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
