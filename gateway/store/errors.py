"""Store-level refusals; the API maps them to 404 / 409 / 403 with the same reason string."""

from __future__ import annotations


class StoreError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class NotAllowed(StoreError):
    """The actor may not do this to this object (e.g. approving their own request)."""


class Invalid(StoreError):
    """The request itself is incomplete or wrong (a missing category, a wrong confirmation)."""
