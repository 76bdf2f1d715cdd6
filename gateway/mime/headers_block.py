"""The identifying headers of a message whose body is withheld (virus, unparseable, too big).

Only the header block is read (up to the first empty line, at most ``max_bytes``), with the
same Japanese-correct decoder the sanitizer uses (gateway/mime/headers.py), so a quarantined
record is found by its Message-ID and listed with its subject and sender like any other.
Never raises: a hostile header block yields empty fields, not an error.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway.controls import strip_hidden
from gateway.mime.headers import decode_header_value

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_MAX_CHARS = 998  # one RFC 5322 line: enough to identify, bounded for the record and notice
_MAX_FIELDS = 1000  # header lines looked at; a block of 100,000 tiny headers costs nothing
_WANTED = ("subject", "from", "to", "date", "message-id")


@dataclass(frozen=True)
class HeaderSummary:
    subject: str = ""
    header_from: str = ""
    to: str = ""
    date: str = ""
    message_id: str = ""


def one_line(text: str, limit: int = _MAX_CHARS) -> str:
    """Control, format (bidi: RLO, isolates) and line-break characters removed, spaces
    collapsed, length bounded: safe to show in a notice or a console cell."""
    kept = strip_hidden(unicodedata.normalize("NFC", text), breaks=" ")
    spaced = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in kept)
    return " ".join(spaced.split())[:limit]


def header_block(raw: bytes, max_bytes: int) -> bytes:
    """The bytes before the first empty line, cut at ``max_bytes`` (then at a line end)."""
    head = raw[: max_bytes + 4]
    found = _BLANK_LINE.search(head)
    if found is not None and found.start() <= max_bytes:
        return head[: found.start()]
    head = head[:max_bytes]
    cut = head.rfind(b"\n")
    return head[: cut + 1] if cut >= 0 else b""


def summarize(raw: bytes, max_bytes: int) -> HeaderSummary:
    try:
        block = header_block(raw, max_bytes)
        msg = BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")
        values: dict[str, str] = {}
        for n, (name, value) in enumerate(msg.raw_items()):
            if n >= _MAX_FIELDS:
                break
            key = name.strip().lower()
            if key in _WANTED and key not in values:  # the first wins, as in the sanitizer
                values[key] = one_line(decode_header_value(str(value)))
    except Exception:  # noqa: BLE001 - total by contract: an identifying aid, never an error
        return HeaderSummary()
    return HeaderSummary(
        subject=values.get("subject", ""),
        header_from=values.get("from", ""),
        to=values.get("to", ""),
        date=values.get("date", ""),
        message_id=values.get("message-id", "").strip(),
    )
