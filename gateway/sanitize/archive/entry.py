"""One archive member as a format reader yields it, before it is sanitized."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import PartRefused

PPAP_DETAIL = (
    "暗号化ZIP (PPAP) は無害化できないため削除しました。原本は保管されています。"
    "必要な場合は X-Mugai-Id を添えて管理者に原本を請求してください。 / "
    "Encrypted ZIP (PPAP) cannot be sanitized and was removed. The original is kept: "
    "ask the administrator for it, quoting the X-Mugai-Id."
)


@dataclass
class Entry:
    name: str  # logical name as stored, decoded, "/"-separated
    kind: str  # "file", "dir", "link", "special", "refused"
    read: Callable[[], bytes] | None = None
    refusal: PartRefused | None = None
