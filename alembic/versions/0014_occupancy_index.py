"""occupancy index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 06:50:00

The occupancy query (a booking's re-check, availability) asks for one service's confirmed reservations that
end after a time and start before another. By `(service_id, start_at)` it reads every reservation the service
ever had that starts before the window, a scan that grows with the history; by `(service_id, status,
end_at)` it reads only those ending after the window's start, at most the booking horizon's worth, and with
`start_at, party_size` in the index it never visits the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_reservations_service_id_status_end_at"


def upgrade() -> None:
    op.create_index(
        INDEX, "reservations", ["service_id", "status", "end_at", "start_at", "party_size"], unique=False
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="reservations")
