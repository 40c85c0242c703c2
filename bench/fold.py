"""The worker's side: how fast it folds pre-filled batches, and how long usage takes to become visible."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from app.domain.usage.models import usage_counts
from app.domain.usage.recorder import BATCH_SIZE, FOLD_JOB, JOB_OPTIONS, UsageEvent
from app.lib.db import create_alchemy_config, transaction
from app.lib.redis_client import create_redis
from app.settings import Settings
from app.workers import QUEUE_NAME, create_queue
from bench.loadgen import percentiles

JOB_PREFIX = f"saq:job:{QUEUE_NAME}:"


async def prefill(
    redis_url: str, key_ids: Sequence[uuid.UUID], batches: int, route: str = "/api/v1/services"
) -> list[str]:
    """`batches` jobs of BATCH_SIZE events, enqueued exactly as the recorder does; spread over keys and 2 minutes."""
    queue = create_queue(create_redis(redis_url, socket_timeout=None))
    now = time.time()
    rng = random.Random(7)
    batch_ids = []
    try:
        for _ in range(batches):
            events: list[UsageEvent] = [
                (
                    key_ids[rng.randrange(len(key_ids))].hex,
                    now - rng.uniform(0, 120),
                    "GET",
                    route,
                    rng.choice((200, 200, 200, 200, 200, 200, 200, 404, 429)),
                    rng.randrange(800, 5000),
                )
                for _ in range(BATCH_SIZE)
            ]
            batch_id = str(uuid.uuid4())
            await queue.enqueue(FOLD_JOB, key=batch_id, batch_id=batch_id, events=events, **JOB_OPTIONS)
            batch_ids.append(batch_id)
    finally:
        await queue.disconnect()
    return batch_ids


async def load_jobs(redis_url: str) -> list[dict[str, Any]]:
    """Every fold job record still in Redis (finished jobs are kept for their ttl of 10 minutes)."""
    client = create_redis(redis_url)
    try:
        names = [name async for name in client.scan_iter(match=f"{JOB_PREFIX}*", count=1000)]
        jobs = []
        for start in range(0, len(names), 500):
            for raw in await client.mget(names[start : start + 500]):
                if raw is not None:
                    jobs.append(json.loads(raw))
        return [job for job in jobs if job.get("function") == FOLD_JOB]
    finally:
        await client.aclose()


async def wait_for_jobs(redis_url: str, batch_ids: Sequence[str], timeout_s: float) -> list[dict[str, Any]]:
    """Wait until no job is queued or running, then read the jobs (once: each record holds 500 events,
    and reading them all in a polling loop would load Valkey, which shares a core with the worker's peers)."""
    wanted = {JOB_PREFIX + batch_id for batch_id in batch_ids}
    queue = create_queue(create_redis(redis_url))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if await queue.count("queued") + await queue.count("active") == 0:
                names = sorted(wanted)
                raws = [
                    raw
                    for start in range(0, len(names), 500)
                    for raw in await queue.redis.mget(names[start : start + 500])
                ]
                jobs = [json.loads(raw) for raw in raws if raw is not None]
                if len(jobs) == len(wanted) and all(job["status"] == "complete" for job in jobs):
                    return jobs
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not finish {len(wanted)} jobs in {timeout_s} s")
            await asyncio.sleep(0.05)
    finally:
        await queue.disconnect()


def fold_rate(jobs: Sequence[dict[str, Any]]) -> dict[str, object]:
    """Events per second from the first job's start to the last job's commit (worker start-up excluded)."""
    events = sum(len(job["kwargs"]["events"]) for job in jobs)
    first = min(job["started"] for job in jobs) / 1000
    last = max(job["completed"] for job in jobs) / 1000
    per_job = [(job["completed"] - job["started"]) for job in jobs]
    return {
        "jobs": len(jobs),
        "events": events,
        "drain_s": round(last - first, 3),
        "events_per_s": round(events / (last - first), 1),
        "job_time_ms": percentiles([ms / 1000 for ms in per_job]),
    }


def visibility_lag(jobs: Sequence[dict[str, Any]], since: float, until: float) -> dict[str, object]:
    """For the events of requests served in [since, until]: request end → its batch committed by the worker.

    Also the batch's own enqueue → commit time. Only complete jobs count; any other is reported.
    """
    lags: list[float] = []
    batch_lags: list[float] = []
    unfinished = 0
    for job in jobs:
        times = [event[1] for event in job["kwargs"]["events"] if since <= event[1] <= until]
        if not times:
            continue
        if job["status"] != "complete":
            unfinished += 1
            continue
        committed = job["completed"] / 1000
        lags.extend(committed - at for at in times)
        batch_lags.append(committed - job["queued"] / 1000)
    return {
        "events": len(lags),
        "batches": len(batch_lags),
        "unfinished_batches": unfinished,
        "request_to_commit_ms": percentiles(lags),
        "enqueue_to_commit_ms": percentiles(batch_lags),
    }


async def counted_events(settings: Settings) -> int:
    alchemy = create_alchemy_config(settings)
    try:
        async with transaction(alchemy) as session:
            total = await session.scalar(select(func.coalesce(func.sum(usage_counts.c.request_count), 0)))
            return int(total or 0)
    finally:
        await alchemy.get_engine().dispose()
