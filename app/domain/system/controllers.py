"""Liveness of the app and of what it depends on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0


async def _check(name: str, probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "unreachable" to a load balancer
        logger.warning("health check: %s unreachable: %s", name, exc)
        return "unreachable"
    return "ok"


async def _ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


class HealthController(Controller):
    include_in_schema = False

    @get("/health", name="health", cache=False)
    async def health(
        self, db_engine: NamedDependency[AsyncEngine], redis: NamedDependency[Redis]
    ) -> Response[Any]:
        database, redis_state = await asyncio.gather(
            _check("database", _ping_database(db_engine)), _check("redis", redis.ping())
        )
        healthy = database == "ok" and redis_state == "ok"
        return Response(
            {"status": "ok" if healthy else "unavailable", "database": database, "redis": redis_state},
            status_code=200 if healthy else 503,
        )
