"""cancel, list and manage links

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-02 01:25:00

Reservations can be cancelled (when and why), listed by change (organization, updated_at, id) and managed by
the customer through a link whose token is stored only as its SHA-256. Services get the cancellation notice
within which customers can no longer cancel through that link (24 hours for existing ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: SQLite does both in place, so no table is rebuilt.
    op.add_column(
        "services",
        sa.Column("cancellation_notice_minutes", sa.Integer(), server_default="1440", nullable=False),
    )
    op.add_column(
        "reservations",
        sa.Column("cancelled_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
    )
    op.add_column(
        "reservations", sa.Column("cancellation_reason", sa.Text(), server_default="", nullable=False)
    )
    op.add_column("reservations", sa.Column("manage_token_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_reservations_manage_token_hash", "reservations", ["manage_token_hash"], unique=True)
    op.create_index(
        "ix_reservations_organization_id_updated_at_id",
        "reservations",
        ["organization_id", "updated_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_reservations_organization_id_updated_at_id", table_name="reservations")
    op.drop_index("ix_reservations_manage_token_hash", table_name="reservations")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_column("manage_token_hash")
        batch_op.drop_column("cancellation_reason")
        batch_op.drop_column("cancelled_at")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_column("cancellation_notice_minutes")
