"""Database tables (SQLAlchemy 2). The schema itself is created by the alembic migrations
(``gateway/store/migrations``); these classes must match them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


OPEN_RELEASE_WHERE = (
    "status IN ('pending', 'approved', 'failed') OR (status = 'released' AND reopened_at IS NULL)"
)


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), default="mail")  # mail | file
    message_id: Mapped[str] = mapped_column(String(1000), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    mail_from: Mapped[str] = mapped_column(String(512), default="", index=True)
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    header_from: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    detail: Mapped[str] = mapped_column(Text, default="")
    tokens: Mapped[list[str]] = mapped_column(JSON, default=list)
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    scan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str] = mapped_column(String(255), default="")
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)


class RecipientRow(Base):
    """One envelope recipient per row (lower-cased), so `recipient=` search uses an index."""

    __tablename__ = "message_recipients"

    message: Mapped[str] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(512), primary_key=True, index=True)


class BlobRow(Base):
    """Original (原本) and sanitized bytes; in the database so any node can serve them."""

    __tablename__ = "blobs"

    message: Mapped[str] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # original | sanitized
    data: Mapped[bytes] = mapped_column(LargeBinary)


class UserRow(Base):
    """A person (gateway/store/users.py): unique name, one role; tokens are issued to them."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[str] = mapped_column(String(128))


class TokenRow(Base):
    """An API token: only its sha256 is kept (see gateway/store/tokens.py for why not bcrypt).

    ``name`` and ``role`` repeat the person's at issue time (for listings); who the caller is
    and what they may do come from ``user_id`` (migration 0003)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("users.id", name="fk_api_tokens_user_id"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReleaseRequestRow(Base):
    __tablename__ = "release_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    message: Mapped[str] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    # pending → approved (delivery under way) → released | failed; pending → rejected
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)  # who got the original
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # original (the guideline's 例外措置: category + reason) | sanitized (re-delivery)
    kind: Mapped[str] = mapped_column(String(16), default="original", server_default="original")
    category: Mapped[str] = mapped_column(String(32), default="", server_default="")
    exception: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    confirmed_signature: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The approval that may record the delivery: a late answer of an older attempt is ignored.
    attempt: Mapped[str] = mapped_column(String(32), default="", server_default="")
    reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reopened_by: Mapped[str] = mapped_column(String(64), default="", server_default="")
    reopen_reason: Mapped[str] = mapped_column(Text, default="", server_default="")

    __table_args__ = (
        # At most one open request, or one release not reopened, per message (races included).
        Index(
            "ux_release_requests_one_open",
            "message",
            unique=True,
            sqlite_where=text(OPEN_RELEASE_WHERE),
            postgresql_where=text(OPEN_RELEASE_WHERE),
        ),
    )


class MessageReasonRow(Base):
    """One row per reason code of a message or any of its parts, so `reason=` uses an index."""

    __tablename__ = "message_reasons"

    message: Mapped[str] = mapped_column(
        String(32), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class AuditRow(Base):
    """Append-only; each row's hash covers the previous row's hash (see gateway/store/audit.py).

    ``at`` is kept as ISO text so the hashed value round-trips byte for byte on every backend.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(128), default="", index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 (key outside the database) over the previous MAC and this entry's hash.
    mac: Mapped[str] = mapped_column(String(64), default="", server_default="")
    key_id: Mapped[str] = mapped_column(String(32), default="", server_default="")


class AuditHeadRow(Base):
    """The single chain-head row: locked (FOR UPDATE) by every writer so the chain stays linear,
    and the reference that lets `audit verify` notice rows cut off the end."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64), default="", server_default="")
