"""The worker's queue: SAQ's sweep, minus its habit of aborting a job a worker is just starting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from saq.job import Status

from app.lib.queue import SweepSafeRedisQueue
from app.lib.redis_client import create_redis

pytestmark = pytest.mark.anyio


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[SweepSafeRedisQueue]:
    queue = SweepSafeRedisQueue(
        create_redis(redis_url, socket_timeout=None), name=f"sweep-{uuid.uuid4().hex}"
    )
    yield queue
    await queue.disconnect()


async def take_without_marking(queue: SweepSafeRedisQueue) -> str:
    """What a worker does first when it takes a job: the move to the active list, before marking it active."""
    job_id = await queue.redis.lmove(queue.namespace("queued"), queue.namespace("active"), "LEFT", "RIGHT")
    assert job_id is not None
    return str(job_id.decode())


async def sweep_now(queue: SweepSafeRedisQueue) -> list[str]:
    await queue.redis.delete(queue.namespace("sweep"))  # the sweep lock, so that each call sweeps
    return await queue.sweep(lock=60, abort=0.1)


async def test_a_job_being_started_is_not_swept(queue: SweepSafeRedisQueue) -> None:
    job = await queue.enqueue("fold_usage", retries=3)
    assert job is not None
    await take_without_marking(queue)
    assert await sweep_now(queue) == []
    # The worker marks it active, as it does a moment after taking it: it is a healthy running job.
    await job.update(status=Status.ACTIVE, started=job.queued + 1)
    assert await sweep_now(queue) == []
    await job.refresh()
    assert job.status == Status.ACTIVE


async def test_a_job_left_unmarked_by_a_dead_worker_is_swept_and_retried(queue: SweepSafeRedisQueue) -> None:
    job = await queue.enqueue("fold_usage", retries=3)
    assert job is not None
    job_id = await take_without_marking(queue)  # and the worker dies here
    assert await sweep_now(queue) == []
    await asyncio.sleep(0)
    assert await sweep_now(queue) == [job_id]
    await job.refresh()
    assert job.status == Status.QUEUED
    assert job.error == queue.swept_error_message
    assert await queue.redis.lrange(queue.namespace("active"), 0, -1) == []


async def test_a_job_whose_record_is_gone_is_removed_from_the_active_list(queue: SweepSafeRedisQueue) -> None:
    job = await queue.enqueue("fold_usage")
    assert job is not None
    job_id = await take_without_marking(queue)
    await queue.redis.delete(job_id)
    assert await sweep_now(queue) == [job_id]
    assert await queue.redis.lrange(queue.namespace("active"), 0, -1) == []
