"""How a batch of usage events is folded into per-minute counts, before any database is involved."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Column, MetaData, Table, create_engine, select
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.domain.api_keys.models import ApiKey
from app.domain.usage.services import (
    _DriverValues,
    aggregate,
    months_before,
    outcome_of,
    roll_up,
    status_class,
)

KEY_A = "a" * 32
KEY_B = "b" * 32
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
NOON_MINUTE = int(NOON // 60)


def test_events_of_one_minute_route_and_outcome_add_up() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON + 1, "GET", "/api/v1/services", 200, 1000),
            (KEY_A, NOON + 59.9, "GET", "/api/v1/services", 204, 500),
            (KEY_A, NOON + 60, "GET", "/api/v1/services", 200, 700),
        ]
    )
    assert folded.counts == {
        (KEY_A, NOON_MINUTE, "GET", "/api/v1/services", "2xx"): [2, 1500],
        (KEY_A, NOON_MINUTE + 1, "GET", "/api/v1/services", "2xx"): [1, 700],
    }


def test_keys_routes_methods_and_status_classes_are_counted_apart() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON, "GET", "/r", 200, 1),
            (KEY_B, NOON, "GET", "/r", 200, 1),
            (KEY_A, NOON, "POST", "/r", 201, 1),
            (KEY_A, NOON, "GET", "/other", 200, 1),
            (KEY_A, NOON, "GET", "/r", 404, 1),
            (KEY_A, NOON, "GET", "/r", 429, 1),
            (KEY_A, NOON, "GET", "/r", 403, 1),
        ]
    )
    assert sorted(
        (key, method, route, klass, n) for (key, _, method, route, klass), (n, _) in folded.counts.items()
    ) == [
        (KEY_A, "GET", "/other", "2xx", 1),
        (KEY_A, "GET", "/r", "2xx", 1),
        (KEY_A, "GET", "/r", "429", 1),
        (KEY_A, "GET", "/r", "4xx", 2),
        (KEY_A, "POST", "/r", "2xx", 1),
        (KEY_B, "GET", "/r", "2xx", 1),
    ]


def test_newest_use_per_key_whatever_the_order_of_events() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON + 30, "GET", "/r", 200, 1),
            (KEY_A, NOON + 90, "GET", "/r", 200, 1),
            (KEY_A, NOON, "GET", "/r", 200, 1),
            (KEY_B, NOON - 5, "GET", "/r", 500, 1),
        ]
    )
    assert folded.newest_use == {KEY_A: NOON + 90, KEY_B: NOON - 5}


def test_rate_limited_requests_are_an_outcome_of_their_own() -> None:
    assert [status_class(s) for s in (200, 302, 401, 429, 503)] == ["2xx", "3xx", "4xx", "429", "5xx"]
    assert [outcome_of(status_class(s)) for s in (201, 304, 403, 429, 500)] == [
        "success",
        "success",
        "client_error",
        "rate_limited",
        "server_error",
    ]


def test_the_folds_driver_values_are_what_sqlalchemy_itself_would_send() -> None:
    # The fold sends driver-ready values (no type machinery per row): on each dialect they must be the ones
    # SQLAlchemy sends for the same column, or the fold would write rows the app reads differently.
    key_id = uuid.UUID("0192f2a4-7a2b-7c3d-8e4f-a1b2c3d4e5f6")
    used = datetime(2026, 11, 20, 12, 0, 5, tzinfo=UTC)
    sqlite_values = _DriverValues(aiosqlite.dialect())
    assert sqlite_values.key(key_id.hex) == key_id.bytes
    assert sqlite_values.second(int(used.timestamp())) == "2026-11-20 12:00:05.000000"
    postgres_values = _DriverValues(asyncpg.dialect())  # type: ignore[no-untyped-call]
    assert postgres_values.key(key_id.hex) == str(key_id)
    assert postgres_values.second(int(used.timestamp())) == used

    # And on a real SQLite database, SQLAlchemy reads what the fold wrote back as the values it was given.
    engine = create_engine("sqlite://")
    keys = cast(Table, ApiKey.__table__)
    probe = Table("probe", MetaData(), Column("id", keys.c.id.type), Column("at", keys.c.last_used_at.type))
    with engine.begin() as connection:
        probe.create(connection)
        connection.exec_driver_sql(
            "INSERT INTO probe (id, at) VALUES (?, ?)",
            (sqlite_values.key(key_id.hex), sqlite_values.second(int(used.timestamp()))),
        )
        assert connection.execute(select(probe.c.id, probe.c.at)).one() == (key_id, used)


def test_minutes_roll_up_into_utc_hours_and_local_days() -> None:
    # 18:25 UTC is 23:55 in Kolkata (UTC+5:30): its next minutes are the next local day, within the same hour.
    start = int(datetime(2026, 11, 20, 18, 25, tzinfo=UTC).timestamp() // 60)
    counts = {
        (KEY_A, start, "GET", "/r", "2xx"): [2, 10],
        (KEY_A, start + 10, "GET", "/r", "2xx"): [3, 20],
        (KEY_B, start, "GET", "/r", "2xx"): [1, 5],
        ("c" * 32, start, "GET", "/r", "2xx"): [9, 9],  # no zone: a deleted key
    }
    hourly, daily = roll_up(counts, {KEY_A: ZoneInfo("Asia/Kolkata"), KEY_B: UTC})
    hour = start // 60
    assert hourly == {(KEY_A, hour, "GET", "/r", "2xx"): [5, 30], (KEY_B, hour, "GET", "/r", "2xx"): [1, 5]}
    assert daily == {
        (KEY_A, date(2026, 11, 20), "GET", "/r", "2xx"): [2, 10],
        (KEY_A, date(2026, 11, 21), "GET", "/r", "2xx"): [3, 20],
        (KEY_B, date(2026, 11, 20), "GET", "/r", "2xx"): [1, 5],
    }


def test_thirteen_months_before_a_day() -> None:
    assert months_before(date(2026, 12, 2), 13) == date(2025, 11, 2)
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_before(date(2026, 1, 15), 13) == date(2024, 12, 15)
