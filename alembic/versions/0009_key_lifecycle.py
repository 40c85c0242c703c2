"""key lifecycle: a previous secret per key

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 01:30:00.000000

Rolling a key keeps the secret it replaced working for a grace period: its hash (unique, so the guard's
lookup finds a key by either secret with an index), its display prefix and when it stops working.
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of the table on SQLite) and a unique index rather than a constraint,
    # which SQLite could only add by rebuilding the table.
    op.add_column("api_keys", sa.Column("previous_key_hash", sa.String(length=64), nullable=True))
    op.add_column("api_keys", sa.Column("previous_prefix", sa.String(length=16), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column(
            "previous_expires_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True
        ),
    )
    op.create_index(op.f("ix_api_keys_previous_key_hash"), "api_keys", ["previous_key_hash"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_keys_previous_key_hash"), table_name="api_keys")
    # SQLite has DROP COLUMN since 3.35.
    op.drop_column("api_keys", "previous_expires_at")
    op.drop_column("api_keys", "previous_prefix")
    op.drop_column("api_keys", "previous_key_hash")
