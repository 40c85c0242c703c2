"""Folding usage events into per-minute counts, pruning them, and summarizing a key's usage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any, cast
from zoneinfo import ZoneInfo

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import Dialect, Table, and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.domain.api_keys.models import ApiKey
from app.domain.usage.models import usage_batches, usage_counts
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


# (key id hex, minute as unix minutes, method, route, status class)
CountKey = tuple[str, int, str, str, str]


@dataclass(frozen=True, slots=True)
class FoldedBatch:
    counts: dict[CountKey, list[int]]  # → [requests, total latency µs]
    newest_use: dict[str, float]  # key id hex → unix time of its newest event


def aggregate(events: Iterable[Sequence[Any]]) -> FoldedBatch:
    """Events into (key, minute, method, route, status class) → requests and total latency, and newest use per key.

    Plain values only: this loop runs for every event the API serves, so it builds no datetimes or UUIDs.
    """
    counts: dict[CountKey, list[int]] = {}
    newest: dict[str, float] = {}
    classes: dict[int, str] = {}
    for key_hex, at, method, route, status, latency_us in events:
        klass = classes.get(status)
        if klass is None:
            klass = classes[status] = status_class(status)
        bucket_key = (key_hex, int(at // 60), method, route, klass)
        bucket = counts.get(bucket_key)
        if bucket is None:
            counts[bucket_key] = [1, latency_us]
        else:
            bucket[0] += 1
            bucket[1] += latency_us
        if at > newest.get(key_hex, 0.0):
            newest[key_hex] = at
    return FoldedBatch(counts, newest)


@dataclass(frozen=True, slots=True)
class _FoldSql:
    """The fold's statements compiled once for a dialect, with the order of their positional parameters."""

    claim: str
    claim_order: tuple[str, ...]
    count: str
    count_order: tuple[str, ...]
    touch: str
    touch_order: tuple[str, ...]


def _compile_fold_sql(dialect: Dialect) -> _FoldSql:
    keys = cast(Table, ApiKey.__table__)
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    claim = insert(usage_batches).values(batch_id=bindparam("batch_id"), folded_at=bindparam("folded_at"))
    # Adds a row's requests and latency to its minute's counts, creating the row when it is the first; a key
    # deleted since its requests has nothing left to count against, so its rows are skipped by the database.
    row = select(*(bindparam(column.name, type_=column.type) for column in usage_counts.c)).where(
        exists().where(keys.c.id == bindparam("key_id"))
    )
    count = insert(usage_counts).from_select([column.name for column in usage_counts.c], row)
    count = count.on_conflict_do_update(
        index_elements=[column.name for column in usage_counts.primary_key],
        set_={
            "request_count": usage_counts.c.request_count + count.excluded.request_count,
            "total_latency_us": usage_counts.c.total_latency_us + count.excluded.total_latency_us,
        },
    )
    # Last Used only moves forward: a late batch never drags it back. Being used is not an edit of the key,
    # so its updated_at stays (without the explicit value the column's onupdate default would set it).
    touch = (
        update(keys)
        .where(
            keys.c.id == bindparam("key_id", type_=keys.c.id.type),
            or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < bindparam("used_at")),
        )
        .values(
            last_used_at=bindparam("used_at", type_=keys.c.last_used_at.type), updated_at=keys.c.updated_at
        )
    )
    compiled = [
        statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        for statement in (claim.on_conflict_do_nothing(), count, touch)
    ]
    return _FoldSql(
        *(part for sql in compiled for part in (str(sql), tuple(sql.positiontup or ())))  # type: ignore[arg-type]
    )


COUNT_COLUMNS = tuple(column.name for column in usage_counts.c)


class _DriverValues:
    """Bind values as the driver wants them, made by the columns' own types once per distinct value.

    Kept across batches (a worker sees the same keys and minutes again and again), and bounded.
    """

    MAX_CACHED = 100_000

    def __init__(self, dialect: Dialect) -> None:
        keys = cast(Table, ApiKey.__table__)
        self._key = keys.c.id.type._cached_bind_processor(dialect) or _same
        self._time = keys.c.last_used_at.type._cached_bind_processor(dialect) or _same
        self._keys: dict[str, Any] = {}
        self._seconds: dict[int, Any] = {}

    def key(self, key_hex: str) -> Any:
        value = self._keys.get(key_hex)
        if value is None:
            if len(self._keys) >= self.MAX_CACHED:
                self._keys.clear()
            value = self._keys[key_hex] = self._key(uuid.UUID(hex=key_hex))
        return value

    def second(self, unix_second: int) -> Any:
        value = self._seconds.get(unix_second)
        if value is None:
            if len(self._seconds) >= self.MAX_CACHED:
                self._seconds.clear()
            value = self._seconds[unix_second] = self._time(datetime.fromtimestamp(unix_second, UTC))
        return value


def _same(value: Any) -> Any:
    return value


async def fold_batches(
    session: AsyncSession, batches: Sequence[tuple[str, Sequence[UsageEvent]]], now: datetime
) -> set[str]:
    """Fold batches in the caller's transaction; returns the ids of those folded now (the others were folded
    before: retried jobs).

    The worker's throughput is this function: the statements are compiled once and run with executemany on
    driver-ready tuples, so no SQL is built and no value passes through SQLAlchemy's type machinery per row.
    """
    connection = await session.connection()
    sql, values = _for_dialect(connection.dialect)
    folded_at = values.second(int(now.timestamp()))
    claimed: set[str] = set()
    for batch_id, _ in batches:
        claim = {"batch_id": batch_id, "folded_at": folded_at}
        result = await connection.exec_driver_sql(sql.claim, tuple(claim[name] for name in sql.claim_order))
        if result.rowcount:
            claimed.add(batch_id)
    folded = aggregate(event for batch_id, events in batches if batch_id in claimed for event in events)

    count_items: Iterable[tuple[CountKey, list[int]]] = folded.counts.items()
    newest_use: Iterable[tuple[str, float]] = folded.newest_use.items()
    if connection.dialect.name == "postgresql":
        # Rows in key order, so that two workers folding at once lock rows in the same order (no deadlock).
        # SQLite has one writer at a time, and sorting costs as much as a third of the upsert.
        count_items, newest_use = sorted(count_items), sorted(newest_use)
    count_order = itemgetter(*(COUNT_COLUMNS.index(name) for name in sql.count_order))
    counts = [
        count_order(
            (values.key(key_hex), values.second(minute * 60), method, route, klass, requests, latency)
        )
        for (key_hex, minute, method, route, klass), (requests, latency) in count_items
    ]
    if counts:
        await connection.exec_driver_sql(sql.count, counts)
    # Last Used is kept to the second (shown to the minute at best), so few distinct times need converting.
    touch_order = itemgetter(*(("key_id", "used_at").index(name) for name in sql.touch_order))
    touches = [touch_order((values.key(key_hex), values.second(int(at)))) for key_hex, at in newest_use]
    if touches:
        await connection.exec_driver_sql(sql.touch, touches)
    return claimed


_PER_DIALECT: dict[tuple[str, str], tuple[_FoldSql, _DriverValues]] = {}


def _for_dialect(dialect: Dialect) -> tuple[_FoldSql, _DriverValues]:
    """The compiled statements and the value cache of a dialect (and driver), made on first use."""
    key = (dialect.name, dialect.driver)
    if key not in _PER_DIALECT:
        _PER_DIALECT[key] = (_compile_fold_sql(dialect), _DriverValues(dialect))
    return _PER_DIALECT[key]


class UsageFolder:
    """Folds the batches of a worker's concurrently running jobs together: one transaction, one commit.

    Batches of one period dirty the same database pages (the same keys' rows, the same minutes), so folding
    those that wait together writes each page once instead of once per batch. A job whose batch was folded
    by another job's transaction just collects the outcome; if that transaction fails, every job in the
    group fails and SAQ retries each one (their batch ids make a retry count nothing twice).
    """

    def __init__(self, alchemy: SQLAlchemyAsyncConfig) -> None:
        self._alchemy = alchemy
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[str, Sequence[UsageEvent], asyncio.Future[bool]]] = []

    async def fold(self, batch_id: str, events: Sequence[UsageEvent]) -> bool:
        """True when this call counted the batch, False when it had been folded before."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (batch_id, events, outcome)
        self._waiting.append(entry)
        try:
            async with self._lock:
                if not outcome.done():
                    await self._fold_waiting()
        except asyncio.CancelledError:
            if entry in self._waiting:  # not folded: SAQ retries the job
                self._waiting.remove(entry)
            elif outcome.done() and not outcome.cancelled():
                outcome.exception()  # this job is cancelled anyway: its outcome is not needed
            raise
        return await outcome

    async def _fold_waiting(self) -> None:
        """Fold every batch waiting now, and settle each one's outcome (an exception if the fold failed)."""
        group, self._waiting = self._waiting, []
        try:
            async with transaction(self._alchemy) as session:
                claimed = await fold_batches(
                    session, [(b, events) for b, events, _ in group], datetime.now(UTC)
                )
        except Exception as exc:
            for _, _, outcome in group:
                if not outcome.done():
                    outcome.set_exception(exc)
            return
        except BaseException:  # cancelled (a job timeout, shutdown): rolled back, the others are retried
            for _, _, outcome in group:
                if not outcome.done():
                    outcome.set_exception(RuntimeError("usage fold interrupted"))
            raise
        for batch_id, _, outcome in group:
            outcome.set_result(batch_id in claimed)


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
