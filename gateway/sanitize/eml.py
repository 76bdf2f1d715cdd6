"""A message found as a file (an attached .eml, a mail inside a ZIP): sanitized recursively.

Its headers and text become a UTF-8 text file (links disarmed, HTML converted); each of
its attachments goes through the registry like any other part.
"""

from __future__ import annotations

from gateway.errors import ArchiveLimit, ConversionFailed, Permanent
from gateway.mime.body import compose_body
from gateway.mime.defang import disarm
from gateway.mime.parse import parse_message
from gateway.model import Action, CleanFile, Detected, PartReport, SanitizeResult
from gateway.sanitize.base import Context
from gateway.sanitize.names import clean_name

_SHOWN = ("from", "to", "cc", "date", "subject")


def sanitize_eml(data: bytes, filename: str, detected: Detected, ctx: Context) -> SanitizeResult:
    limits = ctx.limits
    if ctx.depth >= limits.max_archive_depth:
        raise ArchiveLimit("nested messages too deep")
    try:
        parsed = parse_message(
            data,
            max_parts=limits.max_parts,
            max_depth=limits.max_depth,
            max_header_bytes=limits.max_header_bytes,
        )
    except Permanent as exc:
        # Whole-message refusals of the outer mail become a refusal of this one part.
        raise ConversionFailed(f"{exc.reason}: {exc.detail}") from exc
    body, html_converted, links, _ = compose_body(parsed)
    head = "\n".join(
        f"{name.title()}: {parsed.headers[name]}" for name in _SHOWN if name in parsed.headers
    )
    # The forwarded message's headers are sender's text shown as ours: disarmed, last.
    shown = disarm(f"{head}\n\n{body}\n" if head else f"{body}\n")
    text, links = shown.text, links + shown.links
    files: list[CleanFile] = [
        CleanFile(clean_name(filename or "message", "txt"), "text/plain", text.encode("utf-8"))
    ]
    children: list[PartReport] = []
    if ctx.recurse is None:
        raise ConversionFailed("no registry to sanitize the attachments with")
    for att in parsed.attachments:
        report, outputs = ctx.recurse(
            att.data, att.filename, att.declared_type, ctx.child(), att.index
        )
        children.append(report)
        files.extend(outputs)
    reasons: list[str] = []
    if html_converted:
        reasons.append("html_to_text")
    if links:
        reasons.append("links_disarmed")
    return SanitizeResult(
        files=tuple(files), action=Action.CONVERTED, reasons=tuple(reasons),
        children=tuple(children),
    )  # fmt: skip
