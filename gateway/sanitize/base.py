"""The sanitizer port: what every sanitizer takes and returns.

A sanitizer is a plain function ``(data, filename, detected, ctx) -> SanitizeResult``.
It either returns rebuilt files of an allowed output type or raises a
``gateway.errors.PartRefused`` subclass whose ``reason`` ends up in the notice.
Sanitizers never start processes themselves: heavy work goes through the
converters in ``ctx`` (backed by ``gateway.sanitize.sandbox``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.errors import PartTooLarge
from gateway.model import CleanFile, Detected, PartReport, SanitizeResult
from gateway.settings import SanitizeSettings

if TYPE_CHECKING:
    from gateway.sanitize.archive.budget import ByteBudget

# Output types the LGWAN side may receive (DESIGN.md §4.4).
ALLOWED_OUTPUT_TYPES = frozenset(
    {"application/pdf", "image/png", "image/jpeg", "text/plain", "text/csv"}
)


class OfficeConverter(Protocol):
    """Turns an Office/ODF/RTF document into PDF bytes (inside a sandbox)."""

    def to_pdf(self, data: bytes, suffix: str, *, timeout: float) -> bytes: ...


class Sanitizer(Protocol):
    def __call__(
        self, data: bytes, filename: str, detected: Detected, ctx: Context
    ) -> SanitizeResult: ...


# Called by container sanitizers (archives, nested mail) for each member:
# recurse(data, filename, declared_type, child_ctx, index) -> (report, files)
Recurse = Callable[[bytes, str, str, "Context", str], tuple[PartReport, tuple[CleanFile, ...]]]


@dataclass
class PageBudget:
    """Pages left for the whole message; shared by all its parts (thread-safe)."""

    remaining: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, pages: int) -> None:
        with self._lock:
            if pages > self.remaining:
                raise PartTooLarge(f"page budget of the message exceeded ({pages} pages)")
            self.remaining -= pages


@dataclass
class Context:
    limits: SanitizeSettings
    pages: PageBudget
    office: OfficeConverter | None = None
    depth: int = 0  # archive / nested-message depth
    # Set by the registry: sanitize one member of a container (see registry.sanitize_part).
    recurse: Recurse | None = None
    # Unpacked archive bytes left for the whole message, shared by every archive in it
    # (nested ones, and those inside mail inside archives, through ``child``). Contexts of
    # one message must share it, like ``pages``; None: a fresh one from ``limits``.
    byte_budget: InitVar[ByteBudget | None] = None
    unpacked: ByteBudget = field(init=False)

    def __post_init__(self, byte_budget: ByteBudget | None) -> None:
        if byte_budget is None:
            # Imported here: the archive package imports this module.
            from gateway.sanitize.archive.budget import ByteBudget

            byte_budget = ByteBudget(self.limits.max_unpacked_bytes)
        self.unpacked = byte_budget

    def child(self) -> Context:
        return Context(
            limits=self.limits,
            pages=self.pages,
            office=self.office,
            depth=self.depth + 1,
            recurse=self.recurse,
            byte_budget=self.unpacked,
        )
