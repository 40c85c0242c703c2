"""The guard's CPU cost measured in-process: the ASGI app called directly, no HTTP server, no socket.

`python -m bench.inproc DATABASE_URL REDIS_URL KEYS_FILE ORG_ID` (pinned to one core by the caller). Prints
JSON: CPU µs per request (this process's user + system time, aiosqlite's threads included) for each route,
32 requests in flight as wrk's 32 connections, routes interleaved in rounds; and, for the trivial routes, the
wall time of one request at a time (the latency the guard adds to a lone call, its two I/O operations
included), in rounds interleaved with the two operations timed alone. What wrk measures over loopback adds
uvicorn's HTTP parsing and the sockets to both sides alike; this is the part that differs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from litestar import Litestar
from sqlalchemy.engine import make_url

from app.domain.api_keys import rules
from app.domain.api_keys.rate_limit import RateLimiter
from app.lib.redis_pipe import RedisPipe
from bench.app import NOAUTH_PATH, PING_NOAUTH_PATH, PING_PATH, create_bench_app
from bench.micro import LOOKUP_SQL, made_up_key_ids

ROUTES = {
    "guarded": "/api/v1/services",
    "unguarded": NOAUTH_PATH,
    "ping_guarded": "/api/v1" + PING_PATH,
    "ping_unguarded": PING_NOAUTH_PATH,
}


def http_scope(path: str, key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer " + key.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Litestar, path: str, key: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(http_scope(path, key), receive, send)  # type: ignore[arg-type]
    return status


class Lifespan:
    """The ASGI lifespan protocol, as a server speaks it: startup before the requests, shutdown after."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _step(self, event: str) -> None:
        await self._incoming.put({"type": f"lifespan.{event}"})
        reply = await self._outgoing.get()
        if reply["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(reply)

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self._app(scope, self._incoming.get, self._outgoing.put))  # type: ignore[arg-type]
        await self._step("startup")

    async def __aexit__(self, *_: object) -> None:
        await self._step("shutdown")
        if self._task is not None:
            await self._task


async def measure(app: Litestar, path: str, keys: list[str], requests: int, in_flight: int) -> float:
    counter = iter(range(requests))
    statuses: dict[int, int] = {}

    async def lane() -> None:
        for n in counter:
            status = await call(app, path, keys[n % len(keys)])
            statuses[status] = statuses.get(status, 0) + 1

    cpu = time.process_time()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    used = time.process_time() - cpu
    if set(statuses) != {200}:
        raise RuntimeError(f"{path}: {statuses}")
    return used / requests * 1e6


async def latency(app: Litestar, path: str, keys: list[str], requests: int) -> float:
    """Wall time per request with one request at a time: what one caller waits, I/O included."""
    started = time.perf_counter()
    for n in range(requests):
        if (status := await call(app, path, keys[n % len(keys)])) != 200:
            raise RuntimeError(f"{path}: {status}")
    return (time.perf_counter() - started) / requests * 1e6


class BareOperations:
    """The guard's two I/O operations with nothing around them, one at a time: the indexed SELECT by hash with
    sqlite3 on the same database file, and the rate-limit script's round trip on a RedisPipe of its own. Timed in the same rounds as the lone requests, so
    that the box's speed, which drifts from minute to minute, is the same on both sides of the ratio."""

    def __init__(self, database_path: str, redis_url: str, keys: list[str]) -> None:
        self._connection = sqlite3.connect(database_path, isolation_level=None, check_same_thread=False)
        self._sql = LOOKUP_SQL.format(param="?")
        self._hashes = [rules.hash_key(key) for key in keys]
        self._key_ids = made_up_key_ids(len(keys))
        self._pipe = RedisPipe(redis_url)
        self._limiter = RateLimiter(self._pipe)

    async def wall_us(self, operations: int) -> float:
        started = time.perf_counter()
        for n in range(operations):
            if self._connection.execute(self._sql, (self._hashes[n % len(self._hashes)],)).fetchone() is None:
                raise RuntimeError("a bench key is missing from the database")
            if await self._limiter.hit(self._key_ids[n % len(self._key_ids)], 1000) is None:
                raise RuntimeError("no reply from Redis")
        return (time.perf_counter() - started) / operations * 1e6

    async def close(self) -> None:
        self._connection.close()
        await self._pipe.close()


async def main(keys: list[str], requests: int, rounds: int) -> dict[str, Any]:
    app = create_bench_app()
    async with Lifespan(app):
        results: dict[str, list[float]] = {name: [] for name in ROUTES}
        for path in ROUTES.values():  # warm-up
            await measure(app, path, keys, requests // 4, 32)
        for n in range(rounds):
            order = list(ROUTES.items()) if n % 2 == 0 else list(reversed(ROUTES.items()))
            for name, path in order:
                results[name].append(await measure(app, path, keys, requests, 32))
        # One request at a time, the trivial routes only: the latency the guard adds to a single call, and the
        # bare operations, interleaved. Twice as many rounds: a lone request's wall time moves with the VM's
        # wake-ups more than its CPU does.
        bare = BareOperations(
            make_url(os.environ["DATABASE_URL"]).database or "", os.environ["REDIS_URL"], keys
        )
        await bare.wall_us(requests // 4)  # connects, warms up
        sequential: dict[str, list[float]] = {"ping_guarded": [], "ping_unguarded": [], "bare_operations": []}
        for n in range(2 * rounds):
            names = list(sequential) if n % 2 == 0 else list(reversed(sequential))
            for name in names:
                if name == "bare_operations":
                    sequential[name].append(await bare.wall_us(requests // 2))
                else:
                    sequential[name].append(await latency(app, ROUTES[name], keys, requests // 2))
        await bare.close()
    median: Callable[[list[float]], float] = lambda values: round(statistics.median(values), 1)  # noqa: E731
    summary = {name: median(values) for name, values in results.items()}
    one_at_a_time = {name: median(values) for name, values in sequential.items()}
    return {
        "cpu_us_per_request": summary,
        "guard_cost_us": round(summary["guarded"] - summary["unguarded"], 1),
        "guard_cost_on_trivial_route_us": round(summary["ping_guarded"] - summary["ping_unguarded"], 1),
        "rounds": {name: [round(v, 1) for v in values] for name, values in results.items()},
        "requests_per_round": requests,
        "wall_us_per_request_1_in_flight": one_at_a_time,
        "guard_latency_on_trivial_route_us": round(
            one_at_a_time["ping_guarded"] - one_at_a_time["ping_unguarded"], 1
        ),
        # Per round: (guarded - unguarded) ÷ bare operations, all three measured within the same few seconds.
        "guard_latency_vs_bare_operations_per_round": [
            round((guarded - unguarded) / ops, 3)
            for guarded, unguarded, ops in zip(
                sequential["ping_guarded"],
                sequential["ping_unguarded"],
                sequential["bare_operations"],
                strict=True,
            )
        ],
        "rounds_1_in_flight": {name: [round(v, 1) for v in values] for name, values in sequential.items()},
    }


def configure_from_argv(argv: list[str]) -> list[str]:
    """`DATABASE_URL REDIS_URL KEYS_FILE ORG_ID`: the environment the bench app reads its settings from;
    returns the keys."""
    database_url, redis_url, keys_file, org_id = argv[:4]
    os.environ.update(
        {
            "APP_ENV": "dev",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-secret-" + "x" * 40,
            "BENCH_ORG_ID": org_id,
            "DATA_DIR": str(Path(keys_file).parent),
        }
    )
    return Path(keys_file).read_text().split()


if __name__ == "__main__":
    key_list = configure_from_argv(sys.argv[1:])
    requests = int(os.environ.get("INPROC_REQUESTS", "2000"))
    rounds = int(os.environ.get("INPROC_ROUNDS", "5"))
    print(json.dumps(uvloop.run(main(key_list, requests, rounds)), indent=2))
