"""The safe preview: the text/plain body of the SANITIZED copy, as text.

Never the original: it may be HTML, scripts or anything else. The sanitized copy is our own
output (one UTF-8 text/plain body plus rebuilt attachments), parsed here with the stdlib email
parser only to find that body; the template escapes it into a ``<pre>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser

MAX_PREVIEW_CHARS = 200_000
MAX_PARTS_WALKED = 200


def _text_of(part: MIMEPart) -> str:
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # an unknown charset label: our copies are UTF-8 anyway
        return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Preview:
    text: str  # empty when the copy has no text/plain body
    truncated: bool
    attachments: tuple[tuple[str, str, int], ...]  # (filename, content type, bytes)


def _body(msg: EmailMessage) -> MIMEPart | None:
    try:
        found = msg.get_body(preferencelist=("plain",))
    except (KeyError, IndexError, ValueError):  # malformed structure: walk instead
        found = None
    if found is not None:
        return found
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS_WALKED:
            break
        if part.get_content_type() == "text/plain" and not part.is_attachment():
            return part
    return None


def _attachments(msg: EmailMessage) -> tuple[tuple[str, str, int], ...]:
    out: list[tuple[str, str, int]] = []
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS_WALKED:
            break
        if part.is_multipart() or not part.is_attachment():
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        out.append((str(part.get_filename() or ""), part.get_content_type(), size))
    return tuple(out)


def preview(data: bytes) -> Preview:
    msg = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(data)
    body = _body(msg)
    text = _text_of(body) if body is not None else ""
    truncated = len(text) > MAX_PREVIEW_CHARS
    return Preview(text[:MAX_PREVIEW_CHARS], truncated, _attachments(msg))
