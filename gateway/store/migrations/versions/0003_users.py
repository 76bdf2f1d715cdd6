"""Persons: API tokens belong to a user (unique name, one role) instead of carrying a free name.

Every distinct token name becomes one user, with the role of its newest token, so two tokens
that shared a name are now, as they always claimed to be, the same person.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_api_tokens_user_id", "users", ["user_id"], ["id"])
        batch.create_index("ix_api_tokens_user_id", ["user_id"])

    bind = op.get_bind()
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("role", sa.String),
        sa.column("user_id", sa.Integer),
    )
    newest: dict[str, str] = {}
    for name, role in bind.execute(sa.select(tokens.c.name, tokens.c.role).order_by(tokens.c.id)):
        newest[name] = role
    now = datetime.now(UTC)
    if newest:
        op.bulk_insert(
            users,
            [
                {
                    "name": name,
                    "role": role,
                    "created_at": now,
                    "created_by": "migration:0003",
                    "changed_at": now,
                    "changed_by": "migration:0003",
                }
                for name, role in newest.items()
            ],
        )
    user_ids = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String))
    bind.execute(
        tokens.update().values(
            user_id=sa.select(user_ids.c.id)
            .where(user_ids.c.name == tokens.c.name)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_user_id")
        batch.drop_constraint("fk_api_tokens_user_id", type_="foreignkey")
        batch.drop_column("user_id")
    op.drop_table("users")
