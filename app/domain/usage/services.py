"""Folding usage events into per-minute counts, pruning them, and summarizing a key's usage."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from operator import itemgetter
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from sqlalchemy import Dialect, Table, and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeEngine

from app.domain.accounts.models import Organization
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import KeyUsage, RefusedCalls
from app.domain.usage.models import usage_batches, usage_counts, usage_daily, usage_hourly
from app.domain.usage.recorder import REFUSED_EXPIRED, REFUSED_REVOKED, UsageEvent
from app.lib.clock import Clock, system_clock
from app.lib.db import transaction

CSV_COLUMNS = ("day", "route", "method", "outcome", "requests", "mean_latency_ms")
OUTCOMES = ("success", "client_error", "rate_limited", "server_error")
# Folded batch ids are kept a little longer than a queued job could wait for a worker.
BATCH_IDS_KEPT = timedelta(days=8)
# How often the worker folds at most, and how many waiting batches start a fold sooner (see UsageFolder): at
# most half the jobs the worker runs at once (WORKER_CONCURRENCY), so those that arrive during a fold can
# start the next one. Half a second keeps a request's usage visible within the 2 s the benchmarks hold it to
# (the recorder's own flush adds up to a second) while still folding a busy second's batches a few at a time.
FOLD_EVERY_S = 0.5
FOLD_AT_BATCHES = 16
# After a full fold (a backlog being drained), how long the next waits for enough batches instead: long enough
# for the worker to take the jobs its finished ones made room for, short enough that a backlog's tail does not
# wait a period.
BACKLOG_WAIT_S = 0.05


# Requests refused because their key is revoked or expired: outcomes of their own in the usage view and export
# (who still calls a dead key), but not a use of the key (Last Used leaves them out).
REFUSED_CLASSES = (REFUSED_REVOKED, REFUSED_EXPIRED)
REFUSED_OUTCOMES = {REFUSED_REVOKED: "refused_revoked", REFUSED_EXPIRED: "refused_expired"}


def status_class(status: int | str) -> str:
    """Rate-limited requests are an outcome of their own; others count by their first digit. A refusal of a
    dead key is recorded as its class already."""
    if isinstance(status, str):
        if status in REFUSED_CLASSES:
            return status
        raise ValueError(f"not a status: {status!r}")
    return "429" if status == 429 else f"{status // 100}xx"


def outcome_of(status_class_: str) -> str:
    """A status class's outcome; a refusal of a dead key is its own, and any other string recorded is an
    outcome as it is."""
    if status_class_ == "429":
        return "rate_limited"
    if status_class_ in REFUSED_OUTCOMES:
        return REFUSED_OUTCOMES[status_class_]
    if len(status_class_) == 3 and status_class_[0].isdigit() and status_class_.endswith("xx"):
        return {"2": "success", "3": "success", "4": "client_error"}.get(status_class_[0], "server_error")
    return status_class_


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
        # A refused request is not a use of the key: Last Used stays.
        if at > newest.get(key_hex, 0.0) and klass not in REFUSED_CLASSES:
            newest[key_hex] = at
    return FoldedBatch(counts, newest)


@dataclass(frozen=True, slots=True)
class _FoldSql:
    """The fold's statements compiled once for a dialect, with the order of their positional parameters."""

    claim: str
    claim_order: tuple[str, ...]
    count: str
    count_order: tuple[str, ...]
    hourly: str
    hourly_order: tuple[str, ...]
    daily: str
    daily_order: tuple[str, ...]
    touch: str
    touch_order: tuple[str, ...]


def count_upsert(table: Table, dialect_name: str) -> Any:
    """Adds a row's requests and latency to its period's counts, creating the row when it is the first; a key
    deleted since its requests has nothing left to count against, so its rows are skipped by the database.
    The same statement for the per-minute rows and each rollup."""
    keys = cast(Table, ApiKey.__table__)
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    row = select(*(bindparam(column.name, type_=column.type) for column in table.c)).where(
        exists().where(keys.c.id == bindparam("key_id"))
    )
    count = insert(table).from_select([column.name for column in table.c], row)
    return count.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={
            "request_count": table.c.request_count + count.excluded.request_count,
            "total_latency_us": table.c.total_latency_us + count.excluded.total_latency_us,
        },
    )


def _compile_fold_sql(dialect: Dialect) -> _FoldSql:
    keys = cast(Table, ApiKey.__table__)
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    claim = insert(usage_batches).values(batch_id=bindparam("batch_id"), folded_at=bindparam("folded_at"))
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
        for statement in (
            claim.on_conflict_do_nothing(),
            count_upsert(usage_counts, dialect.name),
            count_upsert(usage_hourly, dialect.name),
            count_upsert(usage_daily, dialect.name),
            touch,
        )
    ]
    return _FoldSql(
        *(part for sql in compiled for part in (str(sql), tuple(sql.positiontup or ())))  # type: ignore[arg-type]
    )


COUNT_COLUMNS = tuple(column.name for column in usage_counts.c)
HOURLY_COLUMNS = tuple(column.name for column in usage_hourly.c)
DAILY_COLUMNS = tuple(column.name for column in usage_daily.c)


class _DriverValues:
    """Bind values as the driver wants them, made by the columns' own types once per distinct value.

    Kept across batches (a worker sees the same keys and minutes again and again), and bounded.
    """

    MAX_CACHED = 100_000

    def __init__(self, dialect: Dialect) -> None:
        keys = cast(Table, ApiKey.__table__)
        self._key = _bind_processor(keys.c.id.type, dialect)
        self._time = _bind_processor(keys.c.last_used_at.type, dialect)
        self._date = _bind_processor(usage_daily.c.day.type, dialect)
        self._keys: dict[str, Any] = {}
        self._seconds: dict[int, Any] = {}
        self._days: dict[date, Any] = {}

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

    def day(self, local_day: date) -> Any:
        value = self._days.get(local_day)
        if value is None:
            if len(self._days) >= self.MAX_CACHED:
                self._days.clear()
            value = self._days[local_day] = self._date(local_day)
        return value


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """What SQLAlchemy does to a value of this column type before handing it to this dialect's driver
    (for a TypeDecorator, its process_bind_param and then its implementation's conversion)."""
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor or _same


def _same(value: Any) -> Any:
    return value


# (key id hex, local day, method, route, status class)
DayKey = tuple[str, date, str, str, str]


def roll_up(
    counts: dict[CountKey, list[int]], zones: Mapping[str, tzinfo]
) -> tuple[dict[CountKey, list[int]], dict[DayKey, list[int]]]:
    """Per-minute counts into per-hour (unix hours, UTC) and per-day (the key's organization's local day) ones.

    Keys without a zone (deleted since their requests) are left out: their rows would be skipped anyway.
    """
    hourly: dict[CountKey, list[int]] = {}
    daily: dict[DayKey, list[int]] = {}
    local_days: dict[tuple[tzinfo, int], date] = {}
    for (key_hex, minute, method, route, klass), (requests, latency) in counts.items():
        zone = zones.get(key_hex)
        if zone is None:
            continue
        hour_key = (key_hex, minute // 60, method, route, klass)
        hour = hourly.get(hour_key)
        if hour is None:
            hourly[hour_key] = [requests, latency]
        else:
            hour[0] += requests
            hour[1] += latency
        local_day = local_days.get((zone, minute))
        if local_day is None:
            local_day = local_days[(zone, minute)] = datetime.fromtimestamp(minute * 60, zone).date()
        day_key = (key_hex, local_day, method, route, klass)
        day = daily.get(day_key)
        if day is None:
            daily[day_key] = [requests, latency]
        else:
            day[0] += requests
            day[1] += latency
    return hourly, daily


class _KeyZones:
    """The time zone of each key's organization, for its local days: looked up for the keys a fold has not
    seen in the last ZONE_TTL_S (one query for all of them), so a steady stream of batches from the same keys
    costs no query, and an organization's new time zone applies within a minute. Bounded."""

    ZONE_TTL_S = 60.0
    MAX_CACHED = 100_000

    def __init__(self) -> None:
        self._zones: dict[str, tuple[float, tzinfo]] = {}

    async def of(self, connection: AsyncConnection, key_hexes: Iterable[str]) -> dict[str, tzinfo]:
        now = time.monotonic()
        known: dict[str, tzinfo] = {}
        missing: list[str] = []
        for key_hex in key_hexes:
            cached = self._zones.get(key_hex)
            if cached is not None and now - cached[0] < self.ZONE_TTL_S:
                known[key_hex] = cached[1]
            else:
                missing.append(key_hex)
        if missing:
            if len(self._zones) + len(missing) > self.MAX_CACHED:
                self._zones.clear()
            keys = cast(Table, ApiKey.__table__)
            organizations = cast(Table, Organization.__table__)
            rows = await connection.execute(
                select(keys.c.id, organizations.c.time_zone)
                .join(organizations, organizations.c.id == keys.c.organization_id)
                .where(keys.c.id.in_([uuid.UUID(hex=key_hex) for key_hex in missing]))
            )
            for key_id, time_zone in rows:
                zone = known[key_id.hex] = _zone(time_zone)
                self._zones[key_id.hex] = (now, zone)
        return known


_KEY_ZONES = _KeyZones()


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return UTC  # a zone this system does not know: its days are UTC days rather than lost


async def write_counts(
    connection: AsyncConnection,
    counts: dict[CountKey, list[int]],
    hourly: dict[CountKey, list[int]],
    daily: dict[DayKey, list[int]],
) -> None:
    """The fold's upserts: per-minute counts and their hourly and daily rollups added to what is stored."""
    sql, values = _for_dialect(connection.dialect)
    tables: list[tuple[str, tuple[str, ...], tuple[str, ...], Any, Callable[[Any], Any]]] = [
        (sql.count, sql.count_order, COUNT_COLUMNS, counts, lambda minute: values.second(minute * 60)),
        (sql.hourly, sql.hourly_order, HOURLY_COLUMNS, hourly, lambda hour: values.second(hour * 3600)),
        (sql.daily, sql.daily_order, DAILY_COLUMNS, daily, values.day),
    ]
    for statement, order, columns, period_counts, period_value in tables:
        items: Iterable[tuple[Any, list[int]]] = period_counts.items()
        if connection.dialect.name == "postgresql":
            # Rows in key order, so that two workers folding at once lock rows in the same order (no
            # deadlock). SQLite has one writer at a time, and sorting costs as much as a third of the upsert.
            items = sorted(items)
        in_order = itemgetter(*(columns.index(name) for name in order))
        rows = [
            in_order((values.key(key_hex), period_value(period), method, route, klass, requests, latency))
            for (key_hex, period, method, route, klass), (requests, latency) in items
        ]
        if rows:
            await connection.exec_driver_sql(statement, rows)


async def fold_batches(
    session: AsyncSession, batches: Sequence[tuple[str, Sequence[UsageEvent]]], now: datetime
) -> set[str]:
    """Fold batches in the caller's transaction, into the per-minute rows and the hourly and daily rollups;
    returns the ids of those folded now (the others were folded before: retried jobs).

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
    # Every key counted, not only those used: a key with nothing but refusals has no newest use.
    zones = await _KEY_ZONES.of(connection, {count_key[0] for count_key in folded.counts})
    hourly, daily = roll_up(folded.counts, zones)
    await write_counts(connection, folded.counts, hourly, daily)
    newest_use: Iterable[tuple[str, float]] = folded.newest_use.items()
    if connection.dialect.name == "postgresql":
        newest_use = sorted(newest_use)  # the same lock order in every worker, as for the counts
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

    Batches of one period dirty the same rows (the same keys, the same minutes), so folding those that wait
    together writes each row once instead of once per batch. Folds start at most every FOLD_EVERY_S, sooner
    once FOLD_AT_BATCHES wait, and within BACKLOG_WAIT_S after a fold of that many (a backlog): under load a
    key's requests of that period cost one upsert per table, not one per batch, and the rows a fold writes
    stop growing with the request rate. A job whose batch was folded by another job's transaction just
    collects the outcome; if that transaction fails, every job in the group fails and SAQ retries each one
    (their batch ids make a retry count nothing twice).
    """

    def __init__(
        self,
        alchemy: SQLAlchemyAsyncConfig,
        clock: Clock = system_clock,
        fold_every_s: float = FOLD_EVERY_S,
    ) -> None:
        self._alchemy = alchemy
        self._clock = clock
        self._fold_every_s = fold_every_s
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[str, Sequence[UsageEvent], asyncio.Future[bool]]] = []
        self._enough_waiting = asyncio.Event()
        self._next_fold_at = float("-inf")  # the loop's time before which a fold waits for enough batches

    async def fold(self, batch_id: str, events: Sequence[UsageEvent]) -> bool:
        """True when this call counted the batch, False when it had been folded before."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (batch_id, events, outcome)
        self._waiting.append(entry)
        if len(self._waiting) >= FOLD_AT_BATCHES:
            self._enough_waiting.set()
        try:
            async with self._lock:
                if not outcome.done():
                    await self._until_next_fold()
                    await self._fold_waiting()
        except asyncio.CancelledError:
            if entry in self._waiting:  # not folded: SAQ retries the job
                self._waiting.remove(entry)
            elif outcome.done() and not outcome.cancelled():
                outcome.exception()  # this job is cancelled anyway: its outcome is not needed
            raise
        return await outcome

    async def _until_next_fold(self) -> None:
        """Wait (holding the lock) until the next fold is due, or until enough batches wait."""
        remaining = self._next_fold_at - asyncio.get_running_loop().time()
        if remaining > 0 and not self._enough_waiting.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._enough_waiting.wait()

    async def _fold_waiting(self) -> None:
        """Fold every batch waiting now, and settle each one's outcome (an exception if the fold failed)."""
        group, self._waiting = self._waiting, []
        self._enough_waiting.clear()
        loop = asyncio.get_running_loop()
        self._next_fold_at = loop.time() + self._fold_every_s
        try:
            async with transaction(self._alchemy) as session:
                claimed = await fold_batches(session, [(b, events) for b, events, _ in group], self._clock())
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
        finally:
            if len(group) >= FOLD_AT_BATCHES:  # a backlog being drained: its tail need not wait a period
                self._next_fold_at = min(self._next_fold_at, loop.time() + BACKLOG_WAIT_S)
        for batch_id, _, outcome in group:
            outcome.set_result(batch_id in claimed)


@dataclass(frozen=True, slots=True)
class Retention:
    minute_days: int = 7
    hourly_days: int = 90
    daily_months: int = 13


def months_before(day: date, months: int) -> date:
    """The same day of the month `months` earlier (the month's last day when it is shorter)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


async def prune_usage(session: AsyncSession, retention: Retention, now: datetime) -> dict[str, int]:
    """Delete usage older than each table's retention period, and folded batch ids no retry can still need.

    Daily rows are days in the organization's zone; against a UTC day a row may stay a day longer, never less.
    """
    deleted = {}
    for name, table, before in (
        ("minute", usage_counts, usage_counts.c.minute < now - timedelta(days=retention.minute_days)),
        ("hourly", usage_hourly, usage_hourly.c.hour < now - timedelta(days=retention.hourly_days)),
        (
            "daily",
            usage_daily,
            usage_daily.c.day
            < months_before(now.astimezone(UTC).date(), retention.daily_months) - timedelta(days=1),
        ),
    ):
        result = await session.execute(delete(table).where(before))
        deleted[name] = int(result.rowcount)  # type: ignore[attr-defined]
    await session.execute(delete(usage_batches).where(usage_batches.c.folded_at < now - BATCH_IDS_KEPT))
    return deleted


@dataclass(frozen=True, slots=True)
class UsageRange:
    """A period the usage view shows: the last 24 hours in hourly bars, or the last N local days."""

    name: str
    label: str
    periods: int
    hourly: bool = False


RANGES = {
    usage_range.name: usage_range
    for usage_range in (
        UsageRange("24h", "24 hours", 24, hourly=True),
        UsageRange("7d", "7 days", 7),
        UsageRange("30d", "30 days", 30),
        UsageRange("90d", "90 days", 90),
    )
}
DEFAULT_RANGE = "30d"


@dataclass
class UsageBucket:
    """One bar: an hour (starting at `start`, in the organization's zone) or a local day."""

    start: datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, outcome: str, requests: int) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + requests


@dataclass(frozen=True, slots=True)
class RouteUsage:
    method: str
    route: str
    requests: int


@dataclass
class UsageSummary:
    range: UsageRange
    time_zone: str
    buckets: list[UsageBucket]
    # Every outcome with requests in the range, the known ones first: each is a series of its own.
    outcomes: list[str]
    totals: dict[str, int]
    average_latency_ms: float | None
    top_routes: list[RouteUsage] = field(default_factory=list)
    last_used_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.totals.values())


def ordered_outcomes(found: Iterable[str]) -> list[str]:
    """The four known outcomes in their order, then any other outcome found (a free string) by name."""
    found = set(found)
    return [outcome for outcome in OUTCOMES] + sorted(found - set(OUTCOMES))


async def summarize(
    session: AsyncSession, api_key: ApiKey, time_zone: str, now: datetime, usage_range: UsageRange
) -> UsageSummary:
    """A key's usage over a range, from the rollups only: requests per bucket and outcome, totals, latency and
    top routes (two indexed range scans of the key's rollup rows, whatever its traffic)."""
    zone = _zone(time_zone)
    if usage_range.hourly:
        table, period = usage_hourly, usage_hourly.c.hour
        last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        starts: list[Any] = [last - timedelta(hours=n) for n in reversed(range(usage_range.periods))]
        buckets = {start: UsageBucket(start.astimezone(zone)) for start in starts}
    else:
        table, period = usage_daily, usage_daily.c.day
        today = now.astimezone(zone).date()
        starts = [today - timedelta(days=n) for n in reversed(range(usage_range.periods))]
        buckets = {start: UsageBucket(datetime.combine(start, datetime.min.time(), zone)) for start in starts}
    in_range = and_(table.c.key_id == api_key.id, period >= starts[0])

    totals: dict[str, int] = {}
    latency_us = requests_timed = 0
    per_period = await session.execute(
        select(
            period,
            table.c.status_class,
            func.sum(table.c.request_count),
            func.sum(table.c.total_latency_us),
        )
        .where(in_range)
        .group_by(period, table.c.status_class)
    )
    for start, klass, requests, latency in per_period:
        latency_us += int(latency)
        requests_timed += int(requests)
        bucket = buckets.get(start)
        if bucket is not None:
            outcome = outcome_of(klass)
            bucket.add(outcome, int(requests))
            totals[outcome] = totals.get(outcome, 0) + int(requests)
    top = await session.execute(
        select(table.c.method, table.c.route, func.sum(table.c.request_count).label("requests"))
        .where(in_range)
        .group_by(table.c.method, table.c.route)
        .order_by(func.sum(table.c.request_count).desc(), table.c.route)
        .limit(5)
    )
    outcomes = ordered_outcomes(totals)
    return UsageSummary(
        range=usage_range,
        time_zone=time_zone,
        buckets=list(buckets.values()),
        outcomes=outcomes,
        totals={outcome: totals.get(outcome, 0) for outcome in outcomes},
        average_latency_ms=latency_us / requests_timed / 1000 if requests_timed else None,
        top_routes=[RouteUsage(method, route, int(requests)) for method, route, requests in top],
        last_used_at=api_key.last_used_at,
    )


async def daily_export(session: AsyncSession, api_key: ApiKey) -> list[tuple[str, str, str, str, int, float]]:
    """Every retained local day of a key's usage: (day, route, method, outcome, requests, mean latency in ms),
    by day, route, method and outcome."""
    rows = await session.execute(
        select(
            usage_daily.c.day,
            usage_daily.c.route,
            usage_daily.c.method,
            usage_daily.c.status_class,
            usage_daily.c.request_count,
            usage_daily.c.total_latency_us,
        ).where(usage_daily.c.key_id == api_key.id)
    )
    merged: dict[tuple[date, str, str, str], list[int]] = {}
    for day, route, method, klass, requests, latency in rows:
        totals = merged.setdefault((day, route, method, outcome_of(klass)), [0, 0])
        totals[0] += int(requests)
        totals[1] += int(latency)
    return [
        (day.isoformat(), route, method, outcome, requests, round(latency / requests / 1000, 3))
        for (day, route, method, outcome), (requests, latency) in sorted(merged.items())
        if requests
    ]


def usage_csv_text(rows: list[tuple[Any, ...]]) -> str:
    """The export's CSV (the page's export and `litestar keys usage ID --csv`): a header, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


async def requests_last_7_days(
    session: AsyncSession, organization_id: uuid.UUID, time_zone: str, now: datetime
) -> dict[uuid.UUID, int]:
    """Requests per key of an organization over its last 7 local days (today included), from the daily
    rollups in one query whatever the number of keys; keys without requests are absent."""
    first_day = now.astimezone(_zone(time_zone)).date() - timedelta(days=6)
    keys = cast(Table, ApiKey.__table__)
    rows = await session.execute(
        select(usage_daily.c.key_id, func.sum(usage_daily.c.request_count))
        .join(keys, keys.c.id == usage_daily.c.key_id)
        .where(keys.c.organization_id == organization_id, usage_daily.c.day >= first_day)
        .group_by(usage_daily.c.key_id)
    )
    return {key_id: int(requests) for key_id, requests in rows}


class UsageCounts(KeyUsage):
    """The API Keys pages' view of the keys' usage counts."""

    async def refused_since(self, session: AsyncSession, key_id: uuid.UUID, since: datetime) -> RefusedCalls:
        return await refused_requests(session, key_id, since)

    async def requests_last_7_days(
        self, session: AsyncSession, organization_id: uuid.UUID, time_zone: str, now: datetime
    ) -> dict[uuid.UUID, int]:
        return await requests_last_7_days(session, organization_id, time_zone, now)


async def refused_requests(session: AsyncSession, key_id: uuid.UUID, since: datetime) -> RefusedCalls:
    """How often a revoked or expired key was still called since `since`, and when last (to the minute)."""
    row = (
        await session.execute(
            select(func.sum(usage_counts.c.request_count), func.max(usage_counts.c.minute)).where(
                usage_counts.c.key_id == key_id,
                usage_counts.c.minute >= since,
                usage_counts.c.status_class.in_(REFUSED_CLASSES),
            )
        )
    ).one()
    return RefusedCalls(count=int(row[0] or 0), last_at=row[1])
