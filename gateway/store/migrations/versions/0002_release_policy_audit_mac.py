"""Release state machine and policy, reason index, keyed (MACed) audit entries.

- release_requests: kind (original | sanitized), exception category, the confirmed signature,
  the delivery attempt that owns an approval, and reopening by an admin; a partial unique index
  allows at most one open (or released, not reopened) request per message.
- message_reasons: one row per reason code of a message or any of its parts (``reason=``).
- audit_log: ``mac`` (HMAC-SHA256 with a key that is not in the database) and ``key_id``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
OPEN_WHERE = (
    "status IN ('pending', 'approved', 'failed') OR (status = 'released' AND reopened_at IS NULL)"
)


def _reasons(parts: Any) -> set[str]:
    found: set[str] = set()
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict):
            found.update(str(r) for r in part.get("reasons") or [])
            found |= _reasons(part.get("children"))
    return found


def upgrade() -> None:
    with op.batch_alter_table("release_requests") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="original")
        )
        batch.add_column(sa.Column("category", sa.String(32), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("exception", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("confirmed_signature", sa.Text, nullable=False, server_default="")
        )
        batch.add_column(sa.Column("attempt", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("reopened_at", TS, nullable=True))
        batch.add_column(sa.Column("reopened_by", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("reopen_reason", sa.Text, nullable=False, server_default=""))
    op.create_index(
        "ux_release_requests_one_open",
        "release_requests",
        ["message"],
        unique=True,
        sqlite_where=sa.text(OPEN_WHERE),
        postgresql_where=sa.text(OPEN_WHERE),
    )

    op.create_table(
        "message_reasons",
        sa.Column(
            "message",
            sa.String(32),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("reason", sa.String(64), primary_key=True),
    )
    op.create_index("ix_message_reasons_reason", "message_reasons", ["reason"])
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, reasons, parts FROM messages")).all()
    for mid, reasons, parts in rows:
        reasons = json.loads(reasons) if isinstance(reasons, str) else reasons
        parts = json.loads(parts) if isinstance(parts, str) else parts
        codes = {str(r) for r in reasons or []} | _reasons(parts)
        for code in sorted(codes):
            conn.execute(
                sa.text("INSERT INTO message_reasons (message, reason) VALUES (:m, :r)"),
                {"m": mid, "r": code[:64]},
            )

    # Entries written before this revision have no MAC (key_id ''); verify reports them.
    # On SQLite the downgrade leaves these two columns (the append-only table is not rebuilt),
    # so an upgrade after a downgrade finds them already there.
    have = {c["name"] for c in sa.inspect(conn).get_columns("audit_log")}
    if "mac" not in have:
        op.add_column(
            "audit_log", sa.Column("mac", sa.String(64), nullable=False, server_default="")
        )
    if "key_id" not in have:
        op.add_column(
            "audit_log", sa.Column("key_id", sa.String(32), nullable=False, server_default="")
        )
    op.add_column("audit_head", sa.Column("mac", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("audit_head", "mac")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("audit_log", "key_id")
        op.drop_column("audit_log", "mac")
    op.drop_table("message_reasons")
    op.drop_index("ux_release_requests_one_open", table_name="release_requests")
    with op.batch_alter_table("release_requests") as batch:
        for col in ("reopen_reason", "reopened_by", "reopened_at", "attempt",
                    "confirmed_signature", "exception", "category", "kind"):  # fmt: skip
            batch.drop_column(col)
