"""Hourly and daily rollups: kept in the fold's transaction, exactly once, pruned per table, back-filled."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from litestar import Litestar
from sqlalchemy import func, insert, select, update

from app.domain.accounts.models import Organization
from app.domain.usage.jobs import fold_usage, prune_usage_logs
from app.domain.usage.models import usage_counts, usage_daily, usage_hourly
from app.domain.usage.recorder import UsageEvent
from app.lib.db import transaction
from app.settings import PROJECT_ROOT, Settings
from app.workers import job_context
from tests.api_helpers import key_id_of, make_key
from tests.fixtures.app import alchemy_of, dispose_engines
from tests.fixtures.database import migrate
from tests.fixtures.staff import Staff
from tests.usage_helpers import counted_requests, rollups_and_minutes

pytestmark = pytest.mark.anyio
# 2026-11-20 18:25 UTC: 23:55 in Kolkata (UTC+5:30), so the minutes that follow cross its midnight mid-hour.
START = datetime(2026, 11, 20, 18, 25, tzinfo=UTC).timestamp()


async def set_time_zone(app: Litestar, staff: Staff, zone: str) -> None:
    async with transaction(alchemy_of(app)) as session:
        await session.execute(
            update(Organization).where(Organization.id == staff.organization.id).values(time_zone=zone)
        )


def random_events(key_hexes: list[str], count: int, seed: int) -> list[UsageEvent]:
    rng = random.Random(seed)
    return [
        (
            rng.choice(key_hexes),
            START + rng.uniform(0, 3 * 3600),
            rng.choice(("GET", "POST")),
            rng.choice(("/api/v1/services", "/api/v1/reservations")),
            rng.choice((200, 201, 404, 429, 500)),
            rng.randrange(100, 5000),
        )
        for _ in range(count)
    ]


async def test_rollups_agree_with_the_minutes_after_concurrent_folds_and_retries(
    app: Litestar, settings: Settings, studio: Staff, other_studio: Staff
) -> None:
    await set_time_zone(app, other_studio, "Asia/Kolkata")
    keys = [await key_id_of(app, await make_key(app, staff)) for staff in (studio, studio, other_studio)]
    batches = {f"b{n}": random_events([key.hex for key in keys], 200, seed=n) for n in range(12)}
    # Two workers, each with its own folder (its own transactions), folding the same batches at once: every
    # batch is also retried on the other worker.
    workers = [job_context(settings, alchemy_of(app)) for _ in range(2)]
    results = await asyncio.gather(
        *(
            fold_usage(worker, batch_id=batch_id, events=events)  # type: ignore[arg-type]
            for batch_id, events in batches.items()
            for worker in workers
        )
    )
    assert sum(result["folded"] for result in results) == len(batches)
    assert await counted_requests(app) == 12 * 200
    stored, from_minutes = await rollups_and_minutes(app)
    assert stored == from_minutes
    # The Kolkata key's requests fall on two local days, the London keys' on one.
    kolkata_days = {period for table, key, period, *_ in stored if table == "daily" and key == keys[2]}
    assert kolkata_days == {date(2026, 11, 20), date(2026, 11, 21)}
    london_days = {period for table, key, period, *_ in stored if table == "daily" and key == keys[0]}
    assert london_days == {date(2026, 11, 20)}

    # Retried after the commit: nothing changes in any table.
    again = await asyncio.gather(
        *(
            fold_usage(workers[0], batch_id=batch_id, events=events)  # type: ignore[arg-type]
            for batch_id, events in batches.items()
        )
    )
    assert not any(result["folded"] for result in again)
    assert (await rollups_and_minutes(app))[0] == stored


async def test_a_failed_fold_writes_no_rollup(app: Litestar, settings: Settings, studio: Staff) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    ctx = job_context(settings, alchemy_of(app))
    broken = [(key_id.hex, START, "GET", "/r", 200, 1), (key_id.hex, START, "GET", "/r", "not a status", 1)]
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises, the transaction is rolled back
        await fold_usage(ctx, batch_id="broken", events=broken)  # type: ignore[arg-type]
    stored, _ = await rollups_and_minutes(app)
    assert stored == {} and await counted_requests(app) == 0


async def test_the_nightly_job_prunes_each_table_at_its_own_retention(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    now = datetime(2026, 12, 2, 3, 17, tzinfo=UTC)
    row = {"key_id": key_id, "method": "GET", "route": "/r", "status_class": "2xx", "total_latency_us": 1}
    async with transaction(alchemy_of(app)) as session:
        for age_days, requests in ((8, 1), (6, 2)):
            await session.execute(
                insert(usage_counts).values(
                    minute=now - timedelta(days=age_days), request_count=requests, **row
                )
            )
        for age_days, requests in ((91, 1), (89, 2)):
            await session.execute(
                insert(usage_hourly).values(
                    hour=(now - timedelta(days=age_days)).replace(minute=0), request_count=requests, **row
                )
            )
        # 13 months before 2 Dec 2026 is 2 Nov 2025; a day's margin for time zones keeps 1 Nov 2025.
        for day, requests in ((date(2025, 10, 31), 1), (date(2025, 11, 1), 2)):
            await session.execute(insert(usage_daily).values(day=day, request_count=requests, **row))
    result = await prune_usage_logs(job_context(settings, alchemy_of(app), clock=lambda: now))  # type: ignore[arg-type]
    assert result["deleted"] == {"minute": 1, "hourly": 1, "daily": 1}
    async with transaction(alchemy_of(app)) as session:
        for table in (usage_counts, usage_hourly, usage_daily):
            assert await session.scalar(select(func.sum(table.c.request_count))) == 2


async def test_the_migration_back_fills_rollups_from_the_minutes(
    app: Litestar, settings: Settings, studio: Staff, other_studio: Staff
) -> None:
    await set_time_zone(app, other_studio, "Asia/Kolkata")
    keys = [await key_id_of(app, await make_key(app, staff)) for staff in (studio, other_studio)]
    await fold_usage(  # type: ignore[arg-type]
        job_context(settings, alchemy_of(app)),
        batch_id="before-the-rollups",
        events=random_events([key.hex for key in keys], 500, seed=1),
    )
    folded, _ = await rollups_and_minutes(app)
    await dispose_engines(app)

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    await asyncio.to_thread(command.downgrade, config, "0009")  # the minute rows stay, the rollups go
    await asyncio.to_thread(migrate, settings)

    stored, from_minutes = await rollups_and_minutes(app)
    assert stored == from_minutes == folded
    assert len({key for _, key, *_ in stored}) == 2
