"""Liveness of the app and of what it depends on: one Redis round trip and one `SELECT 1`.

A load balancer calls this often, so it costs what it checks and little more: the Redis PING goes on the web
process's pipelined connection (the rate limiter's, `app.lib.redis_pipe`), written before the database is
read so that both answers are awaited together, and the `SELECT 1` on the API's hot read path (on SQLite,
the database file read on the event loop). The handler is built around the two (`HealthCheck`), so Litestar
resolves no dependencies for it (two dependencies of one handler are resolved in a task group per request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import hiredis
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.reads import StatementHook, reads_for
from app.lib.redis_pipe import RedisPipe, encode_command

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0
_PING = select(literal(1))
_REDIS_PING = encode_command("PING")


class HealthCheck:
    """The two probes. `on_statement` sees the database probe's statement (tests count it)."""

    def __init__(self, engine: AsyncEngine, redis: RedisPipe) -> None:
        self._reads = reads_for(engine)
        self._query = self._reads.query(_PING)
        self._redis = redis
        self.on_statement: StatementHook | None = None

    async def states(self) -> tuple[str, str]:
        """("ok" | "unreachable") for the database and for Redis."""
        # Sent now when connected (no await): its round trip overlaps the database's answer.
        pong = self._redis.send_now(_REDIS_PING, 1)
        database = await _state("database", self._ping_database())
        redis = await _state("redis", self._ping_redis(pong))
        return database, redis

    async def _ping_database(self) -> None:
        async with asyncio.timeout(CHECK_TIMEOUT_S):  # no task per check, unlike wait_for
            await self._reads.raw(self._query, {}, self.on_statement)

    async def _ping_redis(self, pong: asyncio.Future[Any] | None) -> None:
        # The pipe fails a reply not received within its own timeout, and bounds its connecting.
        reply = await (pong if pong is not None else self._redis.request(_REDIS_PING, 1))
        if isinstance(reply, hiredis.ReplyError):  # e.g. NOAUTH: Redis answers, but not to us
            raise reply


async def _state(name: str, probe: Any) -> str:
    try:
        await probe
    except Exception as exc:  # any failure means "unreachable" to a load balancer
        logger.warning("health check: %s unreachable: %s", name, exc)
        return "unreachable"
    return "ok"


def create_health_handler(check: HealthCheck) -> HTTPRouteHandler:
    @get("/health", name="health", cache=False, include_in_schema=False)
    async def health() -> Response[Any]:
        database, redis = await check.states()
        healthy = database == "ok" and redis == "ok"
        return Response(
            {"status": "ok" if healthy else "unavailable", "database": database, "redis": redis},
            status_code=200 if healthy else 503,
        )

    return health
