"""Text attachments: decoded (declared charset, then detection) and re-encoded as UTF-8."""

from __future__ import annotations

from gateway.errors import PartTooLarge
from gateway.mime import charset
from gateway.mime.body import strip_controls
from gateway.mime.html import html_to_text
from gateway.model import Action, CleanFile, Detected, SanitizeResult
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

_MAX_TEXT_BYTES = 50 * 1024 * 1024


def sanitize_text(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    if len(data) > _MAX_TEXT_BYTES:
        raise PartTooLarge(f"text of {len(data)} bytes")
    text, used = charset.decode_bytes(data, None)
    text = strip_controls(text.lstrip("\ufeff"))
    is_csv = detected.kind == "csv"
    name = clean_name(filename or "attachment", ".csv" if is_csv else ".txt")
    ctype = "text/csv" if is_csv else "text/plain"
    return SanitizeResult(
        files=(CleanFile(name, ctype, text.encode("utf-8")),),
        action=Action.KEPT,
        detail=f"decoded as {used}, re-encoded as UTF-8",
    )


def sanitize_html_attachment(
    data: bytes, filename: str, detected: Detected, ctx: Context
) -> SanitizeResult:
    """HTML files become readable text; markup, scripts and live links never pass."""
    if len(data) > _MAX_TEXT_BYTES:
        raise PartTooLarge(f"html of {len(data)} bytes")
    text, _ = charset.decode_bytes(data, None)
    result = html_to_text(text)
    name = clean_name(filename or "attachment", ".txt")
    reasons = ("html_to_text",) + (("links_disarmed",) if result.links_disarmed else ())
    return SanitizeResult(
        files=(CleanFile(name, "text/plain", strip_controls(result.text).encode("utf-8")),),
        action=Action.CONVERTED,
        reasons=reasons,
    )
