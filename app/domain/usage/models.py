"""Usage logs: requests per key, folded per minute, route and outcome by the worker."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import orm_registry
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Table

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

# Batches already folded: a job that is retried after its commit counts nothing twice.
usage_batches = Table(
    "usage_batches",
    orm_registry.metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("folded_at", DateTimeUTC(timezone=True), nullable=False, index=True),
)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
