"""The text of a parsed message: every body part as plain text, links disarmed.

Composition first, disarming last: each part is disarmed (for its report), then the
assembled text once more as a whole, and nothing changes the text after that.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mime import html as html_mod
from gateway.mime.defang import clean_text, disarm
from gateway.mime.parse import ParsedMessage
from gateway.model import Action, PartReport


def strip_controls(text: str) -> str:
    """Drop controls, format characters and non-characters (tab and line feeds stay)."""
    return clean_text(text)


@dataclass(frozen=True)
class Body:
    text: str
    html_converted: bool  # an HTML body part was rendered as text
    links_disarmed: int
    reports: tuple[PartReport, ...]


def _quote(text: str, level: int) -> str:
    if level <= 0:
        return text
    prefix = "> " * level
    return "\n".join(prefix + line for line in text.splitlines())


def compose(parsed: ParsedMessage) -> Body:
    """Plain text of all body parts (forwarded headers quoted), disarmed."""
    chunks: list[str] = []
    html_converted = False
    links = 0
    reports: list[PartReport] = []
    for body in parsed.bodies:
        if body.kind == "headers":
            # The quoted header block of a forwarded message is text we write: disarmed too.
            shown = disarm(body.text)
            links += shown.links
            chunks.append(_quote(shown.text, body.quote_level))
            continue
        if body.kind == "html":
            converted = html_mod.html_to_text(body.text)
            text, count = converted.text, converted.links_disarmed
            html_converted = True
            reasons: tuple[str, ...] = ("html_to_text",)
        else:
            shown = disarm(body.text)
            text, count = shown.text, shown.links
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
    # Once more over the whole: quoting and joining must not have made anything live.
    final = disarm("\n\n".join(c for c in chunks if c))
    return Body(final.text, html_converted, links + final.links, tuple(reports))


def compose_body(parsed: ParsedMessage) -> tuple[str, bool, int, list[PartReport]]:
    """``compose`` as a tuple: (text, html_converted, links_disarmed, reports)."""
    body = compose(parsed)
    return body.text, body.html_converted, body.links_disarmed, list(body.reports)
