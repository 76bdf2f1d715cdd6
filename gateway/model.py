"""Frozen value types passed between the stages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer: str = ""
    helo: str = ""


class Action(enum.StrEnum):
    KEPT = "kept"  # text re-encoded, content unchanged
    CONVERTED = "converted"  # rebuilt into another format (PDF pages, PNG, ...)
    REMOVED = "removed"  # not delivered; see reasons
    BODY = "body"  # used as (part of) the message body


@dataclass(frozen=True)
class CleanFile:
    """One rebuilt file ready to attach: only allowed output types."""

    filename: str
    content_type: str  # application/pdf, image/png, image/jpeg, text/plain, text/csv
    data: bytes


@dataclass(frozen=True)
class SanitizeResult:
    files: tuple[CleanFile, ...]
    action: Action
    reasons: tuple[str, ...] = ()
    detail: str = ""
    # Per-member results when the input was an archive or a nested message.
    children: tuple[PartReport, ...] = ()


@dataclass(frozen=True)
class PartReport:
    """What happened to one original part; shown in the notice and the API."""

    index: str  # "1", "2.1", ... position in the MIME tree or archive
    filename: str
    declared_type: str
    detected_type: str
    action: Action
    reasons: tuple[str, ...] = ()
    size: int = 0
    sha256: str = ""
    outputs: tuple[str, ...] = ()  # file names delivered for this part
    seconds: float = 0.0
    children: tuple[PartReport, ...] = ()
    # For operators (API, report.json): why a converter refused; never shown in the notice.
    detail: str = ""
    qr: tuple[str, ...] = ()  # issue 16: decoded QR/barcode texts, disarmed


@dataclass(frozen=True)
class ScanResult:
    clean: bool
    signature: str = ""
    seconds: float = 0.0
    auth: dict[str, Any] = field(default_factory=dict)  # issue 16: sender verdict


@dataclass(frozen=True)
class Detected:
    kind: str  # registry key: "pdf", "docx", "png", "zip", "text", ... or "unknown"
    mime: str  # libmagic's MIME type
    description: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)  # "encrypted", "macros", "polyglot"


@dataclass(frozen=True)
class MessageReport:
    """What the pipeline learnt about one message: the store takes it whole (one row update),
    the notice and the API read it back."""

    parts: tuple[PartReport, ...] = ()
    tokens: tuple[str, ...] = ()
    subject: str = ""
    message_id: str = ""
    header_from: str = ""
    scan: ScanResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)  # issue 16: sender verdict
    date: str = ""  # for the withheld notice (gateway/mime/headers_block.py)
