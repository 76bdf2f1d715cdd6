"""Runs INSIDE the jail: structure checks of untrusted files that need complex parsers.

Usage (file on stdin, one line on stdout)::

    python -I -m gateway.sanitize.inspect_child olevba     →  "1" (VBA macros found) or "0"

oletools/olefile parse attacker-controlled OLE structures in pure but intricate Python; a
parser bug or a pathological file costs this child, never the gateway. The parent accepts
exactly "0\\n" or "1\\n" and reads anything else as the cautious answer.
"""

from __future__ import annotations

import logging
import sys


def olevba(data: bytes) -> bool:
    from oletools.olevba import VBA_Parser

    logging.getLogger("olevba").setLevel(logging.CRITICAL)
    parser = VBA_Parser("document.ppt", data=data)
    try:
        return bool(parser.detect_vba_macros())
    finally:
        parser.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] != "olevba":
        print("usage: inspect_child olevba", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read()
    try:
        found = olevba(data)
    except Exception:  # noqa: BLE001 - unreadable: the parent decides what that means
        return 3
    sys.stdout.write("1\n" if found else "0\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
