"""Runs INSIDE the jail: structure checks of untrusted files that need complex parsers.

Usage (file on stdin, one JSON line on stdout)::

    python -I -m gateway.sanitize.inspect_child ole

olefile, oletools (olevba) and msoffcrypto parse attacker-controlled OLE2 structures in
intricate Python; a parser bug or a pathological file costs this child, never the gateway.
The answer is one of ``{"r": "broken" | "encrypted_package" | "msi" | "unknown"}`` or
``{"r": "doc" | "dot" | "xls" | "ppt", "macros": bool, "encrypted": bool}``; the parent
(``gateway/mime/detect.py``) accepts exactly these shapes and nothing else.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import sys
from typing import Any

MAX_BIFF_RECORDS = 20_000
_VBA_STORAGES = {"MACROS", "_VBA_PROJECT_CUR", "_VBA_PROJECT", "VBA"}


def ole(data: bytes) -> dict[str, Any]:
    import olefile

    try:
        doc = olefile.OleFileIO(data)
    except Exception:  # noqa: BLE001 - a broken OLE file: the parent decides
        return {"r": "broken"}
    try:
        entries = doc.listdir(streams=True, storages=True)
        top = {e[0] for e in entries if e}
        upper = {p.upper() for e in entries for p in e}
        if "EncryptedPackage" in top:
            return {"r": "encrypted_package"}
        macros = bool(_VBA_STORAGES & upper)
        if "WordDocument" in top:
            kind = "dot" if _word_is_template(doc) else "doc"
        elif "Workbook" in top or "Book" in top:
            kind = "xls"
            macros = macros or _xls_has_xlm(doc, "Workbook" if "Workbook" in top else "Book")
        elif "PowerPoint Document" in top:
            kind = "ppt"
            macros = macros or _olevba_macros(data)
        elif doc.root is not None and str(doc.root.clsid).upper().startswith("000C108"):
            return {"r": "msi"}  # MSI / MSP installer database
        elif "__properties_version1.0" in top and any(
            t.startswith(("__substg1.0_", "__attach_version1.0_")) for t in top
        ):
            return {"r": "msg"}  # Outlook message (MS-OXMSG), see gateway/sanitize/msg.py
        else:
            return {"r": "unknown"}  # Works, Visio, ...
    finally:
        doc.close()
    return {"r": kind, "macros": macros, "encrypted": _office_encrypted(data)}


def _word_is_template(doc: Any) -> bool:
    try:
        with doc.openstream("WordDocument") as fh:
            fib = fh.read(12)
        return len(fib) >= 12 and bool(struct.unpack_from("<H", fib, 10)[0] & 0x0001)
    except Exception:  # noqa: BLE001
        return False


def _xls_has_xlm(doc: Any, stream: str) -> bool:
    """Excel 4 macro sheets: a BOUNDSHEET record whose sheet type is 'macro'."""
    try:
        with doc.openstream(stream) as fh:
            buf = fh.read(4 * 1024 * 1024)
    except Exception:  # noqa: BLE001
        return False
    pos = 0
    for _ in range(MAX_BIFF_RECORDS):
        if pos + 4 > len(buf):
            break
        rtype, size = struct.unpack_from("<HH", buf, pos)
        if rtype == 0x0085 and size >= 6 and pos + 10 <= len(buf):
            if buf[pos + 4 + 5] in (0x01, 0x03):  # macro sheet / VB module sheet
                return True
        if rtype == 0x000A:  # EOF of the workbook globals: no more BOUNDSHEETs
            break
        pos += 4 + size
    return False


def _olevba_macros(data: bytes) -> bool:
    # PowerPoint hides VBA inside its document stream; olevba knows where.
    try:
        from oletools.olevba import VBA_Parser

        logging.getLogger("olevba").setLevel(logging.CRITICAL)
        parser = VBA_Parser("document.ppt", data=data)
        try:
            return bool(parser.detect_vba_macros())
        finally:
            parser.close()
    except Exception:  # noqa: BLE001
        return False


def _office_encrypted(data: bytes) -> bool:
    try:
        import msoffcrypto

        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:  # noqa: BLE001
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] != "ole":
        print("usage: inspect_child ole", file=sys.stderr)
        return 2
    answer = ole(sys.stdin.buffer.read())
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
