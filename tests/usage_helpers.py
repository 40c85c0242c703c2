"""A real SAQ worker for usage tests, run in the test's event loop with the test's settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Litestar
from saq import Worker
from sqlalchemy import func, select

from app.domain.accounts.models import Organization
from app.domain.api_keys.models import ApiKey
from app.domain.usage.models import usage_counts, usage_daily, usage_hourly
from app.lib.db import transaction
from app.settings import Settings
from app.workers import worker_settings
from tests.fixtures.app import alchemy_of


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(**worker_settings(settings))  # type: ignore[arg-type]
    task = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.queue.disconnect()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 15.0) -> None:
    """Poll until check() holds: the worker folds asynchronously. Fails if it never does."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.1)


async def counted_requests(app: Litestar, **filters: Any) -> int:
    async with transaction(alchemy_of(app)) as session:
        statement = select(func.coalesce(func.sum(usage_counts.c.request_count), 0))
        for column, value in filters.items():
            statement = statement.where(usage_counts.c[column] == value)
        return int(await session.scalar(statement) or 0)


async def rollups_and_minutes(app: Litestar) -> tuple[dict[Any, list[int]], dict[Any, list[int]]]:
    """The hourly and daily rollups as stored, and as the per-minute rows add up (each minute in its UTC hour
    and its organization's local day): (stored, from minutes), both keyed by (table, key, period, method,
    route, status class) → [requests, total latency]."""
    async with transaction(alchemy_of(app)) as session:
        zones = {
            key_id: ZoneInfo(zone)
            for key_id, zone in await session.execute(
                select(ApiKey.id, Organization.time_zone).join(
                    Organization, Organization.id == ApiKey.organization_id
                )
            )
        }
        from_minutes: dict[Any, list[int]] = {}
        for key_id, minute, method, route, klass, requests, latency in await session.execute(
            select(usage_counts)
        ):
            for period in (
                ("hourly", minute.replace(minute=0)),
                ("daily", minute.astimezone(zones[key_id]).date()),
            ):
                totals = from_minutes.setdefault((period[0], key_id, period[1], method, route, klass), [0, 0])
                totals[0] += requests
                totals[1] += latency
        stored: dict[Any, list[int]] = {}
        for name, table in (("hourly", usage_hourly), ("daily", usage_daily)):
            for key_id, period, method, route, klass, requests, latency in await session.execute(
                select(table)
            ):
                stored[(name, key_id, period, method, route, klass)] = [int(requests), int(latency)]
    return stored, from_minutes
