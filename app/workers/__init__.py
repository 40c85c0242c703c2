"""The SAQ worker: `saq app.workers.worker_settings`. One queue; its jobs are listed explicitly."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from saq.job import CronJob
from saq.queue.redis import RedisQueue
from saq.types import Context, SettingsDict

from app.db import create_alchemy_config
from app.domain.usage.jobs import fold_usage, prune_usage_logs
from app.redis_client import create_redis
from app.settings import Settings, get_settings

QUEUE_NAME = "default"
WORKER_CONCURRENCY = 4
# Jobs of a dead worker go back to the queue within seconds, not SAQ's default minute.
SWEEP_INTERVAL_S = 5

# Every job the worker runs. SAQ registers them by __qualname__, so names must be unique.
TASKS: list[Any] = [fold_usage, prune_usage_logs]
CRON_JOBS = [CronJob(prune_usage_logs, cron="17 3 * * *", timeout=600, retries=3)]


def create_queue(redis: Redis) -> RedisQueue:
    return RedisQueue(redis, name=QUEUE_NAME)


async def shutdown(ctx: Context) -> None:
    await ctx["alchemy"].get_engine().dispose()  # type: ignore[typeddict-item]


def worker_settings(settings: Settings | None = None) -> SettingsDict[Context]:
    """SAQ's CLI calls this with no arguments; tests pass their own settings."""
    settings = settings or get_settings()

    async def startup(ctx: Context) -> None:
        ctx["settings"] = settings  # type: ignore[typeddict-unknown-key]
        ctx["alchemy"] = create_alchemy_config(settings)  # type: ignore[typeddict-unknown-key]

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
