"""Folding usage events into per-minute counts, pruning them, and summarizing a key's usage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.api_keys.models import ApiKey
from app.domain.usage.models import minute_of, usage_batches, usage_counts
from app.domain.usage.recorder import UsageEvent

OUTCOMES = ("success", "client_error", "rate_limited", "server_error")
# Folded batch ids are kept a little longer than a queued job could wait for a worker.
BATCH_IDS_KEPT = timedelta(days=8)


def status_class(status: int) -> str:
    """Rate-limited requests are an outcome of their own; others count by their first digit."""
    return "429" if status == 429 else f"{status // 100}xx"


def outcome_of(status_class_: str) -> str:
    if status_class_ == "429":
        return "rate_limited"
    return {"2": "success", "3": "success", "4": "client_error"}.get(status_class_[0], "server_error")


CountKey = tuple[uuid.UUID, datetime, str, str, str]


@dataclass(frozen=True, slots=True)
class FoldedBatch:
    counts: dict[CountKey, tuple[int, int]]
    newest_use: dict[uuid.UUID, datetime]


def aggregate(events: Iterable[Sequence[Any]]) -> FoldedBatch:
    """Events into (key, minute, method, route, status class) → (requests, total latency µs), and newest use per key."""
    counts: dict[CountKey, list[int]] = defaultdict(lambda: [0, 0])
    newest: dict[uuid.UUID, datetime] = {}
    for key_hex, at, method, route, status, latency_us in events:
        key_id = uuid.UUID(hex=key_hex)
        moment = datetime.fromtimestamp(at, UTC)
        bucket = counts[(key_id, minute_of(moment), method, route, status_class(status))]
        bucket[0] += 1
        bucket[1] += latency_us
        if key_id not in newest or moment > newest[key_id]:
            newest[key_id] = moment
    return FoldedBatch(counts={key: (c[0], c[1]) for key, c in counts.items()}, newest_use=newest)


def _insert_for(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


@cache
def _count_upsert(dialect_name: str) -> Any:
    """Adds a row's requests and latency to its minute's counts, creating the row when it is the first."""
    statement = (postgresql.insert if dialect_name == "postgresql" else sqlite.insert)(usage_counts)
    return statement.on_conflict_do_update(
        index_elements=[column.name for column in usage_counts.primary_key],
        set_={
            "request_count": usage_counts.c.request_count + statement.excluded.request_count,
            "total_latency_us": usage_counts.c.total_latency_us + statement.excluded.total_latency_us,
        },
    )


async def fold_batch(
    session: AsyncSession, batch_id: str, events: Sequence[UsageEvent], now: datetime
) -> int:
    """Fold one batch in the caller's transaction; returns the events counted (0 when already folded)."""
    insert = _insert_for(session)
    claimed = await session.execute(
        insert(usage_batches).values(batch_id=batch_id, folded_at=now).on_conflict_do_nothing()
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        return 0  # a retried job whose first run committed
    folded = aggregate(events)
    # A key deleted since its requests has nothing left to count against.
    existing = set(
        (await session.scalars(select(ApiKey.id).where(ApiKey.id.in_(list(folded.newest_use))))).all()
    )
    counted = 0
    rows: list[dict[str, Any]] = [
        {
            "key_id": key_id,
            "minute": minute,
            "method": method,
            "route": route,
            "status_class": klass,
            "request_count": requests,
            "total_latency_us": latency,
        }
        for (key_id, minute, method, route, klass), (requests, latency) in folded.counts.items()
        if key_id in existing
    ]
    if rows:
        # One prepared statement run for all rows (executemany): no per-batch SQL to build and compile.
        await session.execute(_count_upsert(session.get_bind().dialect.name), rows)
        keys = cast(Table, ApiKey.__table__)
        # Last Used only moves forward: a late batch never drags it back.
        await session.execute(
            update(keys)
            .where(
                keys.c.id == bindparam("key"),
                or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < bindparam("used_at")),
            )
            .values(last_used_at=bindparam("used_at")),
            [
                {"key": key_id, "used_at": used_at}
                for key_id, used_at in folded.newest_use.items()
                if key_id in existing
            ],
        )
        counted = sum(int(row["request_count"]) for row in rows)
    return counted


async def prune_usage(session: AsyncSession, retention: timedelta, now: datetime) -> int:
    """Delete usage older than the retention period, and folded batch ids no retry can still need."""
    deleted = await session.execute(delete(usage_counts).where(usage_counts.c.minute < now - retention))
    await session.execute(delete(usage_batches).where(usage_batches.c.folded_at < now - BATCH_IDS_KEPT))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


@dataclass
class UsageDay:
    day: date
    success: int = 0
    client_error: int = 0
    rate_limited: int = 0
    server_error: int = 0

    @property
    def total(self) -> int:
        return self.success + self.client_error + self.rate_limited + self.server_error

    def add(self, outcome: str, requests: int) -> None:
        setattr(self, outcome, getattr(self, outcome) + requests)


@dataclass(frozen=True, slots=True)
class RouteUsage:
    method: str
    route: str
    requests: int


@dataclass
class UsageSummary:
    days: list[UsageDay]
    totals: UsageDay
    average_latency_ms: float | None
    top_routes: list[RouteUsage] = field(default_factory=list)
    last_used_at: datetime | None = None


async def summarize(
    session: AsyncSession, api_key: ApiKey, time_zone: str, now: datetime, days: int = 30
) -> UsageSummary:
    """Requests per local day for the last `days` days (today included), totals and top routes."""
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, datetime.min.time(), zone).astimezone(UTC)
    in_window = and_(usage_counts.c.key_id == api_key.id, usage_counts.c.minute >= since)

    by_day = {
        first_day + timedelta(days=offset): UsageDay(first_day + timedelta(days=offset))
        for offset in range(days)
    }
    totals = UsageDay(today)
    per_minute = await session.execute(
        select(usage_counts.c.minute, usage_counts.c.status_class, func.sum(usage_counts.c.request_count))
        .where(in_window)
        .group_by(usage_counts.c.minute, usage_counts.c.status_class)
    )
    for minute, klass, requests in per_minute:
        local_day = minute.astimezone(zone).date()
        if local_day in by_day:
            by_day[local_day].add(outcome_of(klass), int(requests))
            totals.add(outcome_of(klass), int(requests))

    latency = (
        await session.execute(
            select(func.sum(usage_counts.c.total_latency_us), func.sum(usage_counts.c.request_count)).where(
                in_window
            )
        )
    ).one()
    top = await session.execute(
        select(
            usage_counts.c.method,
            usage_counts.c.route,
            func.sum(usage_counts.c.request_count).label("requests"),
        )
        .where(in_window)
        .group_by(usage_counts.c.method, usage_counts.c.route)
        .order_by(func.sum(usage_counts.c.request_count).desc(), usage_counts.c.route)
        .limit(5)
    )
    return UsageSummary(
        days=list(by_day.values()),
        totals=totals,
        average_latency_ms=(int(latency[0]) / int(latency[1]) / 1000) if latency[1] else None,
        top_routes=[RouteUsage(method, route, int(requests)) for method, route, requests in top],
        last_used_at=api_key.last_used_at,
    )
