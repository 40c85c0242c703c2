"""A real SAQ worker for usage tests, run in the test's event loop with the test's settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Litestar
from saq import Worker
from sqlalchemy import func, select

from app.db import transaction
from app.domain.usage.models import usage_counts
from app.settings import Settings
from app.workers import worker_settings
from tests.conftest import alchemy_of


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
