"""Bounded MIME parsing into what the rebuild needs: text bodies and attachments.

The stdlib parser (``policy.default``) does the MIME work; we walk the tree
iteratively with explicit depth and part limits (recursion on hostile nesting
would blow the stack), and decode every header ourselves through
``gateway.mime.headers`` because the stdlib leaves CP50220 encoded-words undecoded.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Final

from gateway.errors import MalformedHeader, TooDeep, TooManyParts, Unparseable
from gateway.mime import charset
from gateway.mime.headers import decode_address_list, decode_header_value, part_filename

KEPT_HEADERS = (
    "from",
    "to",
    "cc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
)
_SIGNATURE_TYPES = {
    "application/pgp-signature",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
}
_MAX_HEADER_CHARS = 16_384  # per decoded header value kept for the rebuild
# The stdlib parses MIME header fields in time quadratic in their special characters
# (40 KiB of ";" took 30 s in the trusted process; 16 KiB of '"' 11 s; "<>@,:[]()" alike).
# Every Content-* field anywhere in the raw message (part headers included; a body line that
# looks like one counts too, which only errs on the side of refusing) is bounded before the
# stdlib sees it: real mail has a handful of parameters and specials per field, and a 255-
# character Japanese file name in RFC 2231 form fits in 6 KiB.
MAX_MIME_FIELD_BYTES: Final = 6_144
MAX_MIME_SPECIALS: Final = 64
MAX_MIME_FIELDS_TOTAL: Final = 131_072  # all Content-* fields of one message together
_SPECIALS: Final = b';"()<>@,:\\[]'
_MIME_FIELD_RE: Final = re.compile(
    rb"^content-[a-z0-9-]{1,40}[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*", re.IGNORECASE | re.MULTILINE
)


@dataclass(frozen=True)
class TextBody:
    kind: str  # "plain", "html" or "headers" (of a forwarded message)
    text: str  # decoded (not yet converted for html)
    charset: str
    quote_level: int = 0  # > 0 inside a forwarded message/rfc822


@dataclass(frozen=True)
class Attachment:
    index: str
    filename: str
    declared_type: str
    data: bytes
    disposition: str = ""


@dataclass(frozen=True)
class Dropped:
    """A part not delivered and not sanitized as a file (e.g. a signature)."""

    index: str
    filename: str
    declared_type: str
    reason: str
    size: int = 0


ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")


@dataclass
class ParsedMessage:
    headers: dict[str, str] = field(default_factory=dict)  # decoded, lower-case names
    # (display name, address) pairs, split before decoding so a name with "," stays one address
    addresses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    bodies: list[TextBody] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    part_count: int = 0
    received_by: list[str] = field(default_factory=list)  # raw Received values (loop check)


def decoded_headers(msg: Message) -> dict[str, str]:
    """Kept headers, decoded; the first occurrence wins (duplicates are an attack vector)."""
    out: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key in KEPT_HEADERS and key not in out:
            text = decode_header_value(str(value))
            out[key] = text[:_MAX_HEADER_CHARS]
    return out


def address_headers(msg: Message) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key in ADDRESS_HEADERS and key not in out:
            out[key] = decode_address_list(str(value))[:200]
    return out


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encodings must not crash us
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("ascii", "surrogateescape")
    return b""


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:  # noqa: BLE001
        return ""


def _charset_param(part: Message) -> str | None:
    try:
        value = part.get_param("charset")
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, tuple):  # RFC 2231 form
        value = value[2]
    return str(value) if value else None


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def _pick_alternative(children: list[Message]) -> int:
    """Prefer the plain-text alternative: it is what the sender wrote for text readers."""
    types = [_content_type(c) for c in children]
    for wanted in ("text/plain", "text/html"):
        for i, ctype in enumerate(types):
            if ctype == wanted and _disposition(children[i]) != "attachment":
                return i
    for i, ctype in enumerate(types):
        if ctype.startswith("multipart/"):
            return i
    return len(children) - 1


def check_mime_fields(raw: bytes) -> None:
    """Raise ``MalformedHeader`` for Content-* fields the stdlib could not parse in bounded time."""
    total = 0
    for m in _MIME_FIELD_RE.finditer(raw):
        value = m.group(0)
        total += len(value)
        if len(value) > MAX_MIME_FIELD_BYTES:
            raise MalformedHeader(f"MIME header field of {len(value)} bytes")
        specials = sum(value.count(bytes([c])) for c in _SPECIALS)
        if specials > MAX_MIME_SPECIALS:
            raise MalformedHeader(f"MIME header field with {specials} special characters")
        if total > MAX_MIME_FIELDS_TOTAL:
            raise MalformedHeader(f"MIME header fields of more than {MAX_MIME_FIELDS_TOTAL} bytes")


def parse_message(
    raw: bytes, *, max_parts: int, max_depth: int, max_header_bytes: int
) -> ParsedMessage:
    check_mime_fields(raw)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as exc:  # noqa: BLE001 - the stdlib parser is lenient; anything else is hostile
        raise Unparseable(f"parser error: {type(exc).__name__}") from exc
    header_bytes = sum(len(n) + len(str(v)) for n, v in msg.raw_items())
    if header_bytes > max_header_bytes:
        raise Unparseable(f"headers of {header_bytes} bytes exceed {max_header_bytes}")

    result = ParsedMessage(headers=decoded_headers(msg), addresses=address_headers(msg))
    result.received_by = [str(v) for n, v in msg.raw_items() if n.lower() == "received"]
    # Stack of (part, index, depth, quote_level); children pushed in reverse to keep order.
    stack: list[tuple[Message, str, int, int]] = [(msg, "1", 0, 0)]
    while stack:
        part, index, depth, quote = stack.pop()
        result.part_count += 1
        if result.part_count > max_parts:
            raise TooManyParts(f"more than {max_parts} MIME parts")
        if depth > max_depth:
            raise TooDeep(f"MIME nesting deeper than {max_depth}")
        for defect in getattr(part, "defects", []):
            result.defects.append(type(defect).__name__)
        ctype = _content_type(part)
        disposition = _disposition(part)
        filename = part_filename(part) or ""

        if ctype == "message/rfc822":
            inner = _children(part)
            if inner:
                # Forwarded mail (inline or as an attachment): shown quoted, its parts sanitized.
                nested = decoded_headers(inner[0])
                block = "\n".join(
                    f"{name.title()}: {nested[name]}"
                    for name in ("from", "date", "to", "cc", "subject")
                    if name in nested
                )
                result.bodies.append(TextBody("headers", block, "utf-8", quote + 1))
                stack.append((inner[0], f"{index}.1", depth + 1, quote + 1))
            else:
                result.attachments.append(
                    Attachment(index, filename or "message.eml", ctype, _payload_bytes(part))
                )
            continue

        if part.is_multipart():
            children = _children(part)
            if ctype == "multipart/alternative" and children:
                chosen = _pick_alternative(children)
                for i, child in enumerate(children):
                    if i != chosen:
                        result.dropped.append(
                            Dropped(
                                f"{index}.{i + 1}",
                                part_filename(child) or "",
                                _content_type(child),
                                "alternative_not_used",
                                len(_payload_bytes(child)) if not child.is_multipart() else 0,
                            )
                        )
                stack.append((children[chosen], f"{index}.{chosen + 1}", depth + 1, quote))
                continue
            for i in range(len(children) - 1, -1, -1):
                stack.append((children[i], f"{index}.{i + 1}", depth + 1, quote))
            continue

        data = _payload_bytes(part)
        if ctype in _SIGNATURE_TYPES:
            result.dropped.append(Dropped(index, filename, ctype, "signature_removed", len(data)))
            continue
        is_text = ctype in ("text/plain", "text/html") or (
            ctype.startswith("message/") and ctype != "message/rfc822"
        )
        if is_text and disposition != "attachment" and not filename:
            text, used = charset.decode_bytes(data, _charset_param(part))
            kind = "html" if ctype == "text/html" else "plain"
            result.bodies.append(TextBody(kind, text, used, quote))
            continue
        result.attachments.append(Attachment(index, filename, ctype, data, disposition))
    return result
