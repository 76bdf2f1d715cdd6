"""Request and response bodies of the admin API (DESIGN.md §4.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from gateway.api.display import visible
from gateway.store.releases import ExceptionCategory
from gateway.store.repository import utc

# Ids and cursors are bounded: ASCII letters, digits, '-' and '_' only.
ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
MAX_LIMIT = 500
MAX_REASON = 2000
MAX_RECIPIENTS = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """Built from store rows; SQLite returns naive datetimes, which are UTC."""

    model_config = ConfigDict(from_attributes=True)

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return utc(value) if isinstance(value, datetime) else value


class MessageSummary(_Out):
    id: str
    message_id: str
    status: str
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    received_at: datetime
    reasons: list[str]
    raw: dict[str, Any] = Field(
        default_factory=dict,
        description="the untrusted fields exactly as received (forensics); the fields "
        "above show bidi and other invisible characters spelled out, e.g. ⟨U+202E⟩",
    )

    # Names of the untrusted text fields made display-safe (gateway/api/display.py).
    DISPLAYED: ClassVar[tuple[str, ...]] = ("mail_from", "subject")

    @model_validator(mode="after")
    def _display_safe(self) -> MessageSummary:
        # Idempotent: FastAPI may validate the model again from its own output.
        if not self.raw:
            self.raw = {name: getattr(self, name) for name in self.DISPLAYED}
            self.raw["rcpt_tos"] = list(self.rcpt_tos)
        for name in self.DISPLAYED:
            setattr(self, name, visible(self.raw[name]))
        self.rcpt_tos = [visible(r) for r in self.raw["rcpt_tos"]]
        return self


class MessageList(BaseModel):
    items: list[MessageSummary]
    next: str | None = Field(None, description="cursor for the next page; null on the last")


class MessageDetail(MessageSummary):
    kind: str
    header_from: str
    filename: str
    updated_at: datetime
    detail: str
    tokens: list[str]
    parts: list[dict[str, Any]]
    scan: dict[str, Any]
    timings: dict[str, float]
    size: int
    sha256: str
    attempts: int
    node: str
    legal_hold: bool
    has_original: bool = False
    has_sanitized: bool = False

    DISPLAYED: ClassVar[tuple[str, ...]] = ("mail_from", "subject", "header_from", "filename")

    @model_validator(mode="after")
    def _display_safe_parts(self) -> MessageDetail:
        if "part_filenames" not in self.raw:
            self.raw["part_filenames"] = [str(p.get("filename", "")) for p in self.parts]
        self.parts = [
            {**p, "filename": visible(name)}
            for p, name in zip(self.parts, self.raw["part_filenames"], strict=False)
        ]
        return self


MAX_SIGNATURE = 500


def _no_controls(value: str) -> str:
    """Reasons: tab and line ends allowed, other control characters not (PostgreSQL cannot
    store a NUL; the store refuses them too, gateway/store/releases.py)."""
    if any((ord(c) < 32 and c not in "\t\r\n") or ord(c) == 127 for c in value):
        raise ValueError("control characters are not allowed")
    return value


class ReleaseRequestIn(_In):
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    # original: the untouched original (例外措置, needs a category); sanitized: re-delivery.
    kind: Literal["original", "sanitized"] = "original"
    category: ExceptionCategory | None = None
    # Required for an infected original (allowed only by [release] allow_infected): the
    # signature, typed by the person, as the explicit confirmation. DESIGN.md §4.5 names the
    # field `confirm_infected`; `confirm_signature` is accepted too.
    confirm_signature: str = Field(
        "",
        max_length=MAX_SIGNATURE,
        validation_alias=AliasChoices("confirm_infected", "confirm_signature"),
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return _no_controls(value.strip())

    @model_validator(mode="after")
    def _category(self) -> ReleaseRequestIn:
        # DESIGN.md §4.5: `category` is optional for API clients (default `exception`, still
        # recorded and audited as 例外措置); the console makes the person choose one.
        if self.kind == "original" and self.category is None:
            self.category = ExceptionCategory.EXCEPTION
        return self


class ReopenIn(_In):
    reason: str = Field(min_length=1, max_length=MAX_REASON)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return _no_controls(value.strip())


class ApproveIn(_In):
    # A subset of the original recipients; omitted ⇒ all of them.
    rcpt_tos: list[str] | None = Field(None, min_length=1, max_length=MAX_RECIPIENTS)
    reason: str = Field("", max_length=MAX_REASON)
    confirm_signature: str = Field(
        "",
        max_length=MAX_SIGNATURE,
        validation_alias=AliasChoices("confirm_infected", "confirm_signature"),
    )

    @field_validator("reason")
    @classmethod
    def _clean_reason(cls, value: str) -> str:
        return _no_controls(value)

    @field_validator("rcpt_tos")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip() for v in value]
        if any(not v or len(v) > 512 or any(c in v for c in "\r\n\0") for v in cleaned):
            raise ValueError("recipients must be non-empty single-line addresses")
        return cleaned


class RejectIn(_In):
    reason: str = Field("", max_length=MAX_REASON)

    @field_validator("reason")
    @classmethod
    def _clean_reason(cls, value: str) -> str:
        return _no_controls(value)


class LegalHoldIn(_In):
    hold: bool


class ReleaseRequestOut(_Out):
    id: str
    message: str
    status: str
    reason: str
    requested_by: str
    requested_at: datetime
    decided_by: str
    decided_at: datetime | None
    decision_reason: str
    rcpt_tos: list[str]
    result: dict[str, Any]
    kind: str
    category: str
    exception: bool
    confirmed_signature: str
    reopened_at: datetime | None
    reopened_by: str
    reopen_reason: str


class ReleaseRequestList(BaseModel):
    items: list[ReleaseRequestOut]
    next: str | None = None


class AuditEntry(_Out):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(BaseModel):
    items: list[AuditEntry]
    next: str | None = None


class TokenIn(_In):
    name: str = Field(pattern=r"^[\w.@+-]{1,64}$")
    role: str = Field(pattern=r"^(viewer|operator|approver|auditor|admin)$")


class TokenOut(_Out):
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class TokenList(BaseModel):
    items: list[TokenOut]
