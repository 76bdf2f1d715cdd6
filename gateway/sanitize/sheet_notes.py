"""What the LibreOffice worker said about a spreadsheet's sheets (issue 16), handed from the
pool to ``sanitize_office`` without changing the ``OfficeConverter.to_pdf`` signature:
both run in the same thread, one document at a time."""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()
_MAX_NAMES = 20


def record_notes(reply: dict[str, Any]) -> None:
    _local.notes = {
        key: [str(n)[:100] for n in reply.get(key) or []][:_MAX_NAMES]
        for key in ("hidden_sheets", "small_sheets")
        if isinstance(reply.get(key), list)
    }


def take_notes() -> dict[str, list[str]]:
    notes: dict[str, list[str]] = getattr(_local, "notes", None) or {}
    _local.notes = None
    return notes


def reasons_and_detail(notes: dict[str, list[str]]) -> tuple[tuple[str, ...], str]:
    reasons: list[str] = []
    detail: list[str] = []
    if notes.get("hidden_sheets"):
        reasons.append("sheet_hidden")
        detail.append("hidden sheets not printed: " + ", ".join(notes["hidden_sheets"]))
    if notes.get("small_sheets"):
        reasons.append("sheet_scaled_small")
        detail.append("scaled below 50% to fit the width: " + ", ".join(notes["small_sheets"]))
    return tuple(reasons), "; ".join(detail)
