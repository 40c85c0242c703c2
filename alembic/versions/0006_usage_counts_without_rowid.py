"""usage counts without rowid (SQLite)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 01:20:00

On SQLite a table with a composite primary key is a rowid table plus an index holding the same key: every
folded row is written twice. WITHOUT ROWID stores the rows in the primary key's own b-tree. PostgreSQL has
no such distinction; nothing changes there.
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate_usage_counts(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The table as 0003 made it: reflected from SQLite, GUID's BINARY(16) would come back as NUMERIC(16).
    table = sa.Table(
        "usage_counts",
        sa.MetaData(),
        sa.Column("key_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("minute", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status_class", sa.String(length=3), nullable=False),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("total_latency_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name="fk_usage_counts_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "key_id", "minute", "method", "route", "status_class", name="pk_usage_counts"
        ),
    )
    with op.batch_alter_table(
        "usage_counts", copy_from=table, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
    ):
        pass


def upgrade() -> None:
    _recreate_usage_counts(with_rowid=False)


def downgrade() -> None:
    _recreate_usage_counts(with_rowid=True)
