"""The SAQ worker: `saq app.workers.worker_settings`. One queue; its jobs are listed explicitly."""

from __future__ import annotations

from typing import Any

from saq.queue.redis import RedisQueue
from saq.types import Context, SettingsDict

from app.redis_client import create_redis
from app.settings import Settings, get_settings

QUEUE_NAME = "default"
WORKER_CONCURRENCY = 4

# Every job the worker runs. SAQ registers them by __qualname__, so names must be unique.
TASKS: list[Any] = []


def create_queue(settings: Settings) -> RedisQueue:
    # socket_timeout=None: the worker's dequeue blocks on purpose.
    return RedisQueue(create_redis(settings.redis_url, socket_timeout=None), name=QUEUE_NAME)


def worker_settings() -> SettingsDict[Context]:
    return {
        "queue": create_queue(get_settings()),
        "functions": TASKS,
        "concurrency": WORKER_CONCURRENCY,
    }
