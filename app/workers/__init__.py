"""The SAQ worker: `saq app.workers.worker_settings`. One queue; its jobs are listed explicitly."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from redis.asyncio import Redis
from saq.job import CronJob
from saq.types import Context, SettingsDict

from app.domain.usage.jobs import fold_usage, prune_usage_logs
from app.domain.usage.services import UsageFolder
from app.domain.webhooks.delivery import Deliverer
from app.domain.webhooks.jobs import deliver_webhooks
from app.lib.clock import Clock, system_clock
from app.lib.db import create_alchemy_config
from app.lib.heap import WORKER_YOUNG_THRESHOLD, collect_young_less_often, freeze_startup_heap
from app.lib.queue import SweepSafeRedisQueue
from app.lib.redis_client import create_redis
from app.settings import Settings, get_settings

QUEUE_NAME = "default"
# Usage batches taken at once: those waiting while one is folded are folded together (see UsageFolder).
WORKER_CONCURRENCY = 32
# Jobs of a dead worker go back to the queue within seconds, not SAQ's default minute.
SWEEP_INTERVAL_S = 5

# Every job the worker runs. SAQ registers them by __qualname__, so names must be unique.
TASKS: list[Any] = [fold_usage, prune_usage_logs, deliver_webhooks]
CRON_JOBS = [
    CronJob(prune_usage_logs, cron="17 3 * * *", timeout=600, retries=3),
    # Every 5 seconds (the sixth field): webhooks go out within seconds of the change. One query when idle.
    CronJob(deliver_webhooks, cron="* * * * * */5", timeout=120, retries=1),
]


def create_queue(redis: Redis, queued_ttl_s: int | None = None) -> SweepSafeRedisQueue:
    """The queue; `queued_ttl_s`: how long a job may wait for a worker before it expires (see the class)."""
    # Jobs are JSON as with SAQ's default, encoded by msgspec: a usage batch is a 48 kB record that SAQ
    # encodes or decodes four times per job, and the standard library takes 5-10x longer over it.
    return SweepSafeRedisQueue(
        redis,
        name=QUEUE_NAME,
        dump=msgspec.json.encode,
        load=msgspec.json.decode,
        queued_ttl_s=queued_ttl_s,
    )


async def shutdown(ctx: Context) -> None:
    await ctx["webhook_deliverer"].client.aclose()  # type: ignore[typeddict-item]
    await ctx["alchemy"].get_engine().dispose()  # type: ignore[typeddict-item]


def job_context(
    settings: Settings, alchemy: SQLAlchemyAsyncConfig, clock: Clock = system_clock
) -> dict[str, Any]:
    """What jobs find in their context besides SAQ's own entries (tests call jobs with it directly)."""
    return {
        "settings": settings,
        "alchemy": alchemy,
        "clock": clock,
        "usage_folder": UsageFolder(alchemy, clock),
        "webhook_deliverer": Deliverer(
            engine=alchemy.get_engine(),
            clock=clock,
            secret_key=settings.secret_key,
            production=settings.is_production,
            client=httpx.AsyncClient(),
        ),
    }


def worker_settings(settings: Settings | None = None, clock: Clock = system_clock) -> SettingsDict[Context]:
    """SAQ's CLI calls this with no arguments; tests pass their own settings (and clock)."""
    settings = settings or get_settings()

    async def startup(ctx: Context) -> None:
        ctx.update(job_context(settings, create_alchemy_config(settings), clock))  # type: ignore[typeddict-item]
        freeze_startup_heap()
        collect_young_less_often(WORKER_YOUNG_THRESHOLD)

    return {
        # socket_timeout=None: the worker's dequeue blocks on purpose.
        "queue": create_queue(create_redis(settings.redis_url, socket_timeout=None)),
        "functions": TASKS,
        "cron_jobs": CRON_JOBS,
        "concurrency": WORKER_CONCURRENCY,
        "startup": startup,
        "shutdown": shutdown,
        "timers": {"schedule": 1, "worker_info": 10, "sweep": SWEEP_INTERVAL_S, "abort": 1},
    }
