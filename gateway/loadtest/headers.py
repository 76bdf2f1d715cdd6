"""Reading and editing the header block of raw message bytes.

Replay sends messages byte for byte, so edits (a fresh Message-ID) are made on the bytes, never
through ``email`` round-trips, which would re-fold headers and re-encode bodies.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

# Only the head is ever inspected; a message whose head is longer is treated as all head.
MAX_HEAD_BYTES = 256 * 1024
MAX_RECIPIENTS = 100
MAX_ADDRESS_FIELD = 16 * 1024

FIELD_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_ADDR = re.compile(r"^[!-~]+@[!-~]+$")
_BARE_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_MSGID = re.compile(r"<([^<>\s]+)>")


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """(head, rest): the head ends before the first empty line; rest starts with that line."""
    window = data[:MAX_HEAD_BYTES]
    ends = [i for i in (window.find(b"\r\n\r\n"), window.find(b"\n\n")) if i >= 0]
    if not ends:
        return window, data[len(window) :]
    end = min(ends)
    head_end = end + (2 if window[end : end + 2] == b"\r\n" else 1)
    return data[:head_end], data[head_end:]


def _lines(head: bytes) -> list[bytes]:
    return head.splitlines(keepends=True)


def fields(head: bytes) -> list[tuple[str, str]]:
    """Unfolded (lower-case name, value) pairs, decoded leniently (values may be 8-bit)."""
    out: list[tuple[str, str]] = []
    for line in _lines(head):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + " " + line.strip().decode("utf-8", "replace"))
            continue
        m = FIELD_RE.match(line)
        if m is None:
            continue
        name = m.group(1).decode("ascii").lower()
        out.append((name, line[m.end() :].strip().decode("utf-8", "replace")))
    return out


def header_values(data: bytes, name: str) -> list[str]:
    head, _ = split_head(data)
    key = name.lower()
    return [value for field, value in fields(head) if field == key]


def normalize_message_id(value: str) -> str | None:
    """The id between angle brackets (what relays keep when they re-fold the header)."""
    m = _MSGID.search(value)
    if m:
        return m.group(1)
    bare = value.strip()
    return bare or None


def message_id(data: bytes) -> str | None:
    for value in header_values(data, "message-id"):
        mid = normalize_message_id(value)
        if mid:
            return mid
    return None


def with_message_id(data: bytes, new_id: str) -> bytes:
    """Replace every Message-ID field (folded lines included) by one, or insert it first."""
    head, rest = split_head(data)
    lines = _lines(head)
    eol = b"\r\n" if (lines and lines[0].endswith(b"\r\n")) else b"\n"
    new_line = b"Message-ID: <" + new_id.encode("ascii") + b">" + eol
    out: list[bytes] = []
    replaced = False
    skipping = False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = False
        m = FIELD_RE.match(line)
        if m and m.group(1).lower() == b"message-id":
            skipping = True
            if not replaced:
                out.append(new_line)
                replaced = True
            continue
        out.append(line)
    if not replaced:
        out.insert(0, new_line)
    if out and not out[-1].endswith(b"\n"):
        out[-1] += eol  # head without a body and without a final newline
    return b"".join(out) + rest


def _parse_addresses(values: list[str]) -> list[str]:
    bounded = [v[:MAX_ADDRESS_FIELD] for v in values]
    try:
        return [addr for _name, addr in getaddresses(bounded)]
    except (RecursionError, ValueError, IndexError):
        # The stdlib parser recurses per group; hostile fields (corpus: mimekit
        # stack-overflow.txt) exhaust it. A plain scan is good enough for an envelope.
        return _BARE_ADDR.findall(" ".join(bounded))


def _addresses(values: list[str]) -> list[str]:
    found: list[str] = []
    for addr in _parse_addresses(values):
        addr = addr.strip()
        # SMTP envelopes here are ASCII; anything else would be refused client-side anyway.
        if _ADDR.match(addr) and addr.isascii() and addr not in found:
            found.append(addr)
        if len(found) >= MAX_RECIPIENTS:
            break
    return found


def header_recipients(data: bytes) -> list[str]:
    head, _ = split_head(data)
    values = [v for name, v in fields(head) if name in ("to", "cc")]
    return _addresses(values)


def header_sender(data: bytes) -> str | None:
    """Return-Path when present (it is the original envelope sender, maybe ``<>``), else From."""
    head, _ = split_head(data)
    parsed = fields(head)
    for name, value in parsed:
        if name == "return-path":
            if value.replace(" ", "") == "<>":
                return ""
            found = _addresses([value])
            if found:
                return found[0]
    found = _addresses([v for name, v in parsed if name == "from"])
    return found[0] if found else None


def rewrite_recipient(addr: str, rcpt: str) -> str:
    """``--rcpt user@dom`` replaces every recipient; ``--rcpt @dom`` keeps each local part."""
    if rcpt.startswith("@"):
        local = addr.rsplit("@", 1)[0]
        return f"{local}{rcpt}"
    return rcpt
