"""The one rule for what happened to a message, at every depth of its part reports.

Used for the ``X-Mugai-Sanitized`` tokens (pipeline), the notice and ``mugai sanitize``'s
``all_clean``: a removal inside an archive inside a forwarded message counts exactly like a
removed top-level attachment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.model import Action, PartReport

# Removals that lose nothing the sender meant the reader to have: the other form of a body
# that is delivered anyway.
_NOT_A_LOSS = ("alternative_not_used",)


def walk(reports: Iterable[PartReport]) -> Iterator[PartReport]:
    """Every report and all its children, iteratively (archives can nest deeply)."""
    stack = list(reports)[::-1]
    while stack:
        report = stack.pop()
        yield report
        stack.extend(reversed(report.children))


def removed_any(reports: Iterable[PartReport]) -> bool:
    return any(r.action is Action.REMOVED and r.reasons != _NOT_A_LOSS for r in walk(reports))


def converted_any(reports: Iterable[PartReport]) -> bool:
    return any(r.action in (Action.CONVERTED, Action.KEPT) for r in walk(reports))


def links_disarmed_any(reports: Iterable[PartReport]) -> bool:
    return any("links_disarmed" in r.reasons for r in walk(reports))


def sanitized_tokens(
    reports: Iterable[PartReport], *, body_changed: bool, links: int
) -> tuple[str, ...]:
    """``CHG_TEXT`` (body made plain text), ``REP_LINK``, ``CONV_ATTACH``, ``DEL_ATTACH``."""
    reports = list(reports)
    tokens: set[str] = set()
    if body_changed:
        tokens.add("CHG_TEXT")
    if links or links_disarmed_any(reports):
        tokens.add("REP_LINK")
    attachments = [r for r in reports if r.action is not Action.BODY]
    if converted_any(attachments):
        tokens.add("CONV_ATTACH")
    if removed_any(attachments):
        tokens.add("DEL_ATTACH")
    return tuple(sorted(tokens))
