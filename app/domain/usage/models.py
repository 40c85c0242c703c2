"""Usage logs: requests per key, folded per minute, route and outcome by the worker, and rolled up per hour
and per day in the same transaction (the usage pages read only the rollups)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import orm_registry
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import BigInteger, Column, Date, ForeignKey, Integer, String, Table

# Plain tables: the worker writes them with bulk upserts, never through ORM objects.
usage_counts = Table(
    "usage_counts",
    orm_registry.metadata,
    # Deleting a key deletes its usage logs, as the help page promises.
    Column("key_id", GUID, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("minute", DateTimeUTC(timezone=True), primary_key=True),
    Column("method", String(8), primary_key=True),
    Column("route", String(200), primary_key=True),
    # "2xx", "3xx", "4xx", "429" or "5xx": rate-limited requests are an outcome of their own.
    Column("status_class", String(3), primary_key=True),
    Column("request_count", Integer, nullable=False),
    Column("total_latency_us", BigInteger, nullable=False),
    # SQLite: rows live in the primary key's b-tree, not in a rowid table plus an index of the same key.
    sqlite_with_rowid=False,
)


def _rollup(name: str, period: Column[Any]) -> Table:
    """Counts per key, period, method, route and outcome, kept by the fold alongside the per-minute rows."""
    return Table(
        name,
        orm_registry.metadata,
        Column("key_id", GUID, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        period,
        Column("method", String(8), primary_key=True),
        Column("route", String(200), primary_key=True),
        # A free string: the charts draw every outcome they find as a series of its own.
        Column("status_class", String(32), primary_key=True),
        Column("request_count", BigInteger, nullable=False),
        Column("total_latency_us", BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )


# Hours in UTC (a local hour starts on a UTC quarter hour at worst: shown in the organization's zone).
usage_hourly = _rollup("usage_hourly", Column("hour", DateTimeUTC(timezone=True), primary_key=True))
# Days in the organization's time zone when the batch was folded.
usage_daily = _rollup("usage_daily", Column("day", Date, primary_key=True))

# Batches already folded: a job that is retried after its commit counts nothing twice.
usage_batches = Table(
    "usage_batches",
    orm_registry.metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("folded_at", DateTimeUTC(timezone=True), nullable=False, index=True),
)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
