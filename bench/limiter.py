"""The rate limiter's cost per request: the sliding-window script against the fixed-window INCR it replaced,
in the same process, interleaved rounds; and the sliding log's memory per key.

`taskset -c 0 python -m bench.limiter DATABASE_URL REDIS_URL KEYS_FILE ORG_ID` prints JSON:

* **limiter alone**: one decision through the web process's pipelined connection (RedisPipe): the script
  (`RateLimiter.hit`) against `MULTI INCR EXPIRE NX EXEC` on a per-minute counter (`FixedWindowLimiter`, the
  limiter before issue 16, kept here as the baseline), and the script through redis-py (the question whether
  the web process needs a second Redis client). CPU µs of this process per decision with 32 in flight, and
  wall µs per decision one at a time.
* **guard**: the trivial route `/api/v1/bench/ping`, guarded, in two apps of this process that differ only in
  their limiter, and unguarded (`/bench/ping-noauth`): the guard's CPU per request (32 in flight) and the
  wall time it adds to a lone request, with each limiter.
* **memory**: `MEMORY USAGE` of one key's full log at limits of 1, 60 and 1000 per minute (and of a counter).

Every ratio is the median of per-round ratios, the sides of a round measured within the same few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import uvloop
from litestar import Litestar
from redis.asyncio import Redis

from app.domain.api_keys.rate_limit import (
    SCRIPT_SHA,
    RateLimitDecision,
    RateLimiter,
    decision_from_reply,
    log_key,
)
from app.lib.redis_client import create_redis
from app.lib.redis_pipe import RedisPipe, encode_command
from bench.inproc import ROUTES, Lifespan, configure_from_argv, latency, measure

S = 1_000_000


class FixedWindowLimiter(RateLimiter):
    """The limiter before issue 16, as the baseline: a counter per key and clock minute, `MULTI INCR EXPIRE
    NX EXEC` in one write on the same connection. (It lets twice the limit through across a minute's end.)"""

    async def hit(self, key_id: uuid.UUID, limit: int, now_us: int | None = None) -> RateLimitDecision | None:
        now = time.time()
        window = int(now) // self.window_s * self.window_s
        key = f"rl:{key_id.hex}:{window}"
        payload = (
            encode_command("MULTI")
            + encode_command("INCR", key)
            + encode_command("EXPIRE", key, self.window_s * 2, "NX")
            + encode_command("EXEC")
        )
        replies = await self._redis.request(payload, replies=4)
        count = int(replies[0])
        return RateLimitDecision(
            limit=limit,
            remaining=max(0, limit - count),
            reset_seconds=window + self.window_s - int(now),
            allowed=count <= limit,
        )


class ScriptThroughRedisPy:
    """The same script through redis-py's client, as the app's other Redis client would send it."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def hit(self, key_id: uuid.UUID, limit: int) -> RateLimitDecision:
        reply = await self._client.evalsha(SCRIPT_SHA, 1, log_key(key_id), limit, str(60 * S))  # type: ignore[misc]
        return decision_from_reply(reply, limit)


Decide = Callable[[uuid.UUID, int], Awaitable[object]]


async def cpu_us(decide: Decide, ids: list[uuid.UUID], operations: int, in_flight: int) -> float:
    counter = iter(range(operations))

    async def lane() -> None:
        for n in counter:
            await decide(ids[n % len(ids)], 1000)

    started = time.process_time()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return (time.process_time() - started) / operations * 1e6


async def wall_us(decide: Decide, ids: list[uuid.UUID], operations: int) -> float:
    started = time.perf_counter()
    for n in range(operations):
        await decide(ids[n % len(ids)], 1000)
    return (time.perf_counter() - started) / operations * 1e6


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _ratios(rounds: dict[str, list[float]], new: str, old: str) -> dict[str, Any]:
    per_round = [round(a / b, 3) for a, b in zip(rounds[new], rounds[old], strict=True)]
    return {"median": round(statistics.median(per_round), 3), "per_round": per_round}


async def limiter_alone(redis_url: str, rounds: int, operations: int) -> dict[str, Any]:
    pipe = RedisPipe(redis_url)
    client = create_redis(redis_url)
    sliding, fixed, through_redis_py = (
        RateLimiter(pipe),
        FixedWindowLimiter(pipe),
        ScriptThroughRedisPy(client),
    )
    # As many key ids as the bench has keys, each far below its limit: no decision is a refusal.
    ids = [uuid.uuid4() for _ in range(2000)]
    variants: dict[str, Decide] = {
        "sliding_script": sliding.hit,
        "fixed_incr_multi": fixed.hit,
        "sliding_script_redis_py": through_redis_py.hit,
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for decide in variants.values():  # connects, loads the script, warms up
            await wall_us(decide, ids, 200)
        for n in range(rounds):
            order = list(variants) if n % 2 == 0 else list(reversed(variants))
            for name in order:
                cpu[name].append(await cpu_us(variants[name], ids, operations, 32))
                wall[name].append(await wall_us(variants[name], ids, operations // 4))
    finally:
        await pipe.close()
        await client.aclose()
    return {
        "cpu_us_32_in_flight": {name: _median(values) for name, values in cpu.items()},
        "wall_us_1_in_flight": {name: _median(values) for name, values in wall.items()},
        "sliding_vs_incr_cpu_32_in_flight": _ratios(cpu, "sliding_script", "fixed_incr_multi"),
        "sliding_vs_incr_wall_1_in_flight": _ratios(wall, "sliding_script", "fixed_incr_multi"),
        "redis_py_vs_pipe_cpu_32_in_flight": _ratios(cpu, "sliding_script_redis_py", "sliding_script"),
        "redis_py_vs_pipe_wall_1_in_flight": _ratios(wall, "sliding_script_redis_py", "sliding_script"),
        "rounds": {"cpu_us_32_in_flight": cpu, "wall_us_1_in_flight": wall},
    }


async def guard(keys: list[str], rounds: int, requests: int) -> dict[str, Any]:
    from bench.app import create_bench_app  # reads the environment set in __main__

    apps: dict[str, Litestar] = {
        "sliding": create_bench_app(),
        "fixed_incr": create_bench_app(rate_limiter=partial(FixedWindowLimiter)),
    }
    guarded, unguarded = ROUTES["ping_guarded"], ROUTES["ping_unguarded"]
    cpu: dict[str, list[float]] = {"sliding": [], "fixed_incr": [], "unguarded": []}
    wall: dict[str, list[float]] = {"sliding": [], "fixed_incr": [], "unguarded": []}
    async with Lifespan(apps["sliding"]), Lifespan(apps["fixed_incr"]):
        for app in apps.values():
            await measure(app, guarded, keys, requests // 4, 32)
        for n in range(rounds):
            order = list(cpu) if n % 2 == 0 else list(reversed(cpu))
            for name in order:
                app, path = (apps["sliding"], unguarded) if name == "unguarded" else (apps[name], guarded)
                cpu[name].append(await measure(app, path, keys, requests, 32))
                wall[name].append(await latency(app, path, keys, requests // 4))
    cost = {name: [g - u for g, u in zip(cpu[name], cpu["unguarded"], strict=True)] for name in apps}
    added = {name: [g - u for g, u in zip(wall[name], wall["unguarded"], strict=True)] for name in apps}
    return {
        "guard_cpu_us_32_in_flight": {name: _median(values) for name, values in cost.items()},
        "guard_added_wall_us_1_in_flight": {name: _median(values) for name, values in added.items()},
        "sliding_vs_incr_guard_cpu": _ratios(cost, "sliding", "fixed_incr"),
        "sliding_vs_incr_guard_latency": _ratios(added, "sliding", "fixed_incr"),
        "rounds": {"cpu_us_32_in_flight": cpu, "wall_us_1_in_flight": wall},
    }


async def memory(redis_url: str) -> dict[str, Any]:
    """One key's log when full (as many admissions within a minute as its limit), by MEMORY USAGE."""
    pipe = RedisPipe(redis_url)
    limiter = RateLimiter(pipe)
    client = create_redis(redis_url)
    out: dict[str, Any] = {}
    try:
        start = int(time.time() * S)
        for limit in (1, 60, 1000):
            key_id = uuid.uuid4()
            for n in range(limit):  # spread over the minute, as a client at its limit would send them
                await limiter.hit(key_id, limit, now_us=start + n * (59 * S // limit))
            usage = await client.memory_usage(log_key(key_id), samples=0)
            length = await client.llen(log_key(key_id))  # type: ignore[misc]
            out[f"log_bytes_at_{limit}_per_minute"] = usage
            out[f"log_entries_at_{limit}_per_minute"] = length
            await client.delete(log_key(key_id))
        counter = f"rl:{uuid.uuid4().hex}:0"
        await client.incr(counter)
        out["fixed_window_counter_bytes"] = await client.memory_usage(counter, samples=0)
        await client.delete(counter)
        out["server_version"] = (await client.info("server")).get("redis_version")
    finally:
        await pipe.close()
        await client.aclose()
    return out


async def main(keys: list[str]) -> dict[str, Any]:
    rounds = int(os.environ.get("LIMITER_ROUNDS", "6"))
    redis_url = os.environ["REDIS_URL"]
    return {
        "limiter_alone": await limiter_alone(redis_url, rounds, int(os.environ.get("LIMITER_OPS", "4000"))),
        "guard": await guard(keys, rounds, int(os.environ.get("INPROC_REQUESTS", "2000"))),
        "memory": await memory(redis_url),
    }


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main(configure_from_argv(sys.argv[1:]))), indent=2))
