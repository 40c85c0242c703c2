"""usage rollups

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 01:30:00

Hourly (UTC hours) and daily (days in the organization's time zone) counts per key, route, method and outcome,
kept by the worker in the fold's transaction so that the usage pages never sum per-minute rows. Back-filled
here from the per-minute rows that exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 5000


def _create_rollup(name: str, period: sa.Column[Any]) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("key_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        period,
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status_class", sa.String(length=32), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("total_latency_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=f"fk_{name}_key_id_api_keys", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", period.name, "method", "route", "status_class", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


def _create_tables() -> tuple[sa.Table, sa.Table]:
    hourly = _create_rollup(
        "usage_hourly",
        sa.Column("hour", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    )
    daily = _create_rollup("usage_daily", sa.Column("day", sa.Date(), nullable=False))
    return hourly, daily


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return UTC


def _back_fill(hourly: sa.Table, daily: sa.Table) -> None:
    """Every per-minute row into its hour and its organization's local day (streamed: there may be millions)."""
    bind = op.get_bind()
    minutes = sa.table(
        "usage_counts",
        sa.column("key_id", advanced_alchemy.types.guid.GUID(length=16)),
        sa.column("minute", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)),
        sa.column("method", sa.String()),
        sa.column("route", sa.String()),
        sa.column("status_class", sa.String()),
        sa.column("request_count", sa.BigInteger()),
        sa.column("total_latency_us", sa.BigInteger()),
    )
    keys = sa.table(
        "api_keys",
        sa.column("id", advanced_alchemy.types.guid.GUID(length=16)),
        sa.column("organization_id", advanced_alchemy.types.guid.GUID(length=16)),
    )
    organizations = sa.table(
        "organizations",
        sa.column("id", advanced_alchemy.types.guid.GUID(length=16)),
        sa.column("time_zone", sa.String()),
    )
    zones = {
        key_id: _zone(time_zone)
        for key_id, time_zone in bind.execute(
            sa.select(keys.c.id, organizations.c.time_zone).join(
                organizations, organizations.c.id == keys.c.organization_id
            )
        )
    }
    by_hour: dict[tuple[Any, datetime, str, str, str], list[int]] = {}
    by_day: dict[tuple[Any, date, str, str, str], list[int]] = {}
    rows = bind.execute(sa.select(minutes).execution_options(yield_per=CHUNK))
    for key_id, minute, method, route, klass, requests, latency in rows:
        zone = zones.get(key_id)
        if zone is None:
            continue
        for totals, period in (
            (by_hour, (key_id, minute.replace(minute=0), method, route, klass)),
            (by_day, (key_id, minute.astimezone(zone).date(), method, route, klass)),
        ):
            counts = totals.setdefault(period, [0, 0])  # type: ignore[attr-defined]
            counts[0] += requests
            counts[1] += latency
    for table, totals, period_name in ((hourly, by_hour, "hour"), (daily, by_day, "day")):
        values = [
            {
                "key_id": key_id,
                period_name: period,
                "method": method,
                "route": route,
                "status_class": klass,
                "request_count": requests,
                "total_latency_us": latency,
            }
            for (key_id, period, method, route, klass), (requests, latency) in totals.items()
        ]
        for start in range(0, len(values), CHUNK):
            bind.execute(table.insert(), values[start : start + CHUNK])


def upgrade() -> None:
    hourly, daily = _create_tables()
    _back_fill(hourly, daily)


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_table("usage_hourly")
