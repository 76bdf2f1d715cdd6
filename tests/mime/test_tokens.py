"""The one recursive rule for X-Mugai-Sanitized tokens and mugai sanitize's all_clean."""

from __future__ import annotations

from gateway.mime.tokens import removed_any, sanitized_tokens
from gateway.model import Action, PartReport


def part(action: Action, *reasons: str, children: tuple[PartReport, ...] = ()) -> PartReport:
    return PartReport("1", "f", "t", "t", action, reasons=reasons, children=children)


def test_removal_deep_inside_archives_counts() -> None:
    deep = part(Action.REMOVED, "unsupported_type")
    tree = part(Action.CONVERTED, children=(part(Action.CONVERTED, children=(deep,)),))
    assert removed_any([tree])
    assert sanitized_tokens([tree], body_changed=False, links=0) == ("CONV_ATTACH", "DEL_ATTACH")


def test_alternative_not_used_is_no_loss() -> None:
    alt = part(Action.REMOVED, "alternative_not_used")
    body = part(Action.BODY)
    assert not removed_any([alt])
    assert sanitized_tokens([body, alt], body_changed=True, links=0) == ("CHG_TEXT",)


def test_links_disarmed_inside_an_attachment_sets_rep_link() -> None:
    inner = part(Action.KEPT, "links_disarmed")
    tree = part(Action.CONVERTED, children=(inner,))
    assert "REP_LINK" in sanitized_tokens([tree], body_changed=False, links=0)


def test_nothing_happened() -> None:
    assert sanitized_tokens([part(Action.BODY)], body_changed=False, links=0) == ()
