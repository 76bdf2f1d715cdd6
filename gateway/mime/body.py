"""The text of a parsed message: every body part as plain text, links disarmed."""

from __future__ import annotations

from gateway.mime import html as html_mod
from gateway.mime.parse import ParsedMessage
from gateway.model import Action, PartReport

_DROP = {c: None for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}


def strip_controls(text: str) -> str:
    """Drop C0/C1 controls other than tab and line breaks: NULs and escapes can hide
    content from the reader or confuse viewers and downstream MTAs."""
    return text.translate(_DROP)


def _quote(text: str, level: int) -> str:
    if level <= 0:
        return text
    prefix = "> " * level
    return "\n".join(prefix + line for line in text.splitlines())


def compose_body(parsed: ParsedMessage) -> tuple[str, bool, int, list[PartReport]]:
    """Plain text of all body parts; (text, html_converted, links_disarmed, reports)."""
    chunks: list[str] = []
    html_converted = False
    links = 0
    reports: list[PartReport] = []
    for body in parsed.bodies:
        if body.kind == "headers":
            chunks.append(_quote(body.text, body.quote_level))
            continue
        if body.kind == "html":
            converted = html_mod.html_to_text(body.text)
            text, count = converted.text, converted.links_disarmed
            html_converted = True
            reasons: tuple[str, ...] = ("html_to_text",)
        else:
            text, count = html_mod.defang_text(body.text)
            reasons = ()
        if count:
            reasons = (*reasons, "links_disarmed")
        links += count
        chunks.append(_quote(text.rstrip(), body.quote_level))
        reports.append(
            PartReport(
                index="body",
                filename="本文 / body",
                declared_type=f"text/{body.kind}",
                detected_type=f"text/{body.kind}; charset={body.charset}",
                action=Action.BODY,
                reasons=reasons,
            )
        )
    text = strip_controls("\n\n".join(c for c in chunks if c))
    return text, html_converted, links, reports
