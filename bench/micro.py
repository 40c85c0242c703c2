"""The physical limit: the guard's two I/O operations timed alone, without the framework.

Run pinned to the server's core: `taskset -c 0 python -m bench.micro DATABASE_URL REDIS_URL KEYS_FILE`.
Prints JSON. Costs are CPU time of this process per operation (what the operation takes from the core
that serves requests), and wall time per operation for reference. Under concurrency (32 in flight, as wrk's
32 connections) the event loop amortizes its wake-ups, which is the condition the guard is measured in.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import uvloop
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.domain.api_keys import rules
from app.domain.api_keys.rate_limit import (
    SCRIPT_SHA,
    SLIDING_WINDOW_SCRIPT,
    WINDOW_SECONDS,
    RateLimiter,
    log_key,
)
from app.lib.redis_client import create_redis
from app.lib.redis_pipe import RedisPipe

LOOKUP_SQL = (
    "SELECT id, organization_id, scopes, allowed_origins, rate_limit_per_minute, expires_at, revoked_at "
    "FROM api_keys WHERE key_hash = {param}"
)


def made_up_key_ids(count: int) -> list[uuid.UUID]:
    """Key ids for the limiter that no bench key has, so that timing it uses up no key's limit."""
    return [uuid.uuid4() for _ in range(count)]


def _cost(operations: int, cpu: float, wall: float) -> dict[str, float]:
    return {"cpu_us": round(cpu / operations * 1e6, 2), "wall_us": round(wall / operations * 1e6, 2)}


def time_sync(operation: Callable[[int], object], operations: int) -> dict[str, float]:
    for n in range(min(1000, operations)):
        operation(n)
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(operations):
        operation(n)
    return _cost(operations, time.process_time() - cpu, time.perf_counter() - wall)


async def time_async(
    operation: Callable[[int], Awaitable[object]], operations: int, concurrency: int
) -> dict[str, float]:
    async def lane(lane_no: int, count: int) -> None:
        for n in range(count):
            await operation(lane_no * count + n)

    await lane(0, min(500, operations))
    per_lane = operations // concurrency
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(lane_no, per_lane) for lane_no in range(concurrency)))
    return _cost(per_lane * concurrency, time.process_time() - cpu, time.perf_counter() - wall)


def sqlite_lookup(path: str, hashes: list[str]) -> dict[str, float]:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    sql = LOOKUP_SQL.format(param="?")
    try:
        return time_sync(lambda n: connection.execute(sql, (hashes[n % len(hashes)],)).fetchone(), 20_000)
    finally:
        connection.close()


async def postgres_lookup(url: str, hashes: list[str], concurrency: int) -> dict[str, float]:
    parsed = make_url(url)
    pool = await asyncpg.create_pool(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        min_size=concurrency,
        max_size=concurrency,
    )
    sql = LOOKUP_SQL.format(param="$1")
    try:
        return await time_async(lambda n: pool.fetchrow(sql, hashes[n % len(hashes)]), 10_000, concurrency)
    finally:
        await pool.close()


async def redis_script(client: Redis, concurrency: int) -> dict[str, float]:
    """The rate-limit script through redis-py's client (EVALSHA; loaded by the warm-up's first call)."""
    ids = made_up_key_ids(2000)
    await client.script_load(SLIDING_WINDOW_SCRIPT)

    async def hit(n: int) -> object:
        key = log_key(ids[n % len(ids)])
        return await client.evalsha(SCRIPT_SHA, 1, key, 1000, str(WINDOW_SECONDS * 1_000_000))  # type: ignore[misc]

    return await time_async(hit, 10_000, concurrency)


async def limiter_script(redis_url: str, concurrency: int) -> dict[str, float]:
    """The app's RateLimiter deciding, through its own pipelined connection."""
    pipe = RedisPipe(redis_url)
    limiter = RateLimiter(pipe)
    ids = made_up_key_ids(2000)
    try:
        return await time_async(lambda n: limiter.hit(ids[n % len(ids)], 1000), 10_000, concurrency)
    finally:
        await pipe.close()


async def _async_parts(database_url: str, redis_url: str, hashes: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}
    client = create_redis(redis_url)
    try:
        results["redis_script_sequential"] = await redis_script(client, 1)
        results["redis_script_32_in_flight"] = await redis_script(client, 32)
        results["redis_script_lean_sequential"] = await limiter_script(redis_url, 1)
        results["redis_script_lean_32_in_flight"] = await limiter_script(redis_url, 32)
    finally:
        await client.aclose()
    if database_url.startswith("postgresql"):
        results["lookup_sequential"] = await postgres_lookup(database_url, hashes, 1)
        results["lookup_32_in_flight"] = await postgres_lookup(database_url, hashes, 32)
    return results


def main() -> None:
    database_url, redis_url, keys_file = sys.argv[1:4]
    keys = [line for line in Path(keys_file).read_text().splitlines() if line]
    hashes = [rules.hash_key(key) for key in keys]
    results: dict[str, object] = {
        "sha256_of_key": time_sync(lambda n: rules.hash_key(keys[n % len(keys)]), 50_000)
    }
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        assert path is not None
        results["lookup_sequential"] = sqlite_lookup(path, hashes)
    results.update(uvloop.run(_async_parts(database_url, redis_url, hashes)))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
