"""The guard's CPU cost measured in-process: the ASGI app called directly, no HTTP server, no socket.

`python -m bench.inproc DATABASE_URL REDIS_URL KEYS_FILE ORG_ID` (pinned to one core by the caller). Prints
JSON: CPU µs per request (this process's user + system time, aiosqlite's threads included) for each route,
32 requests in flight as wrk's 32 connections, routes interleaved in rounds; and, for the trivial routes, the
wall time of one request at a time (the latency the guard adds to a lone call, its two round trips included). What wrk measures over loopback
adds uvicorn's HTTP parsing and the sockets to both sides alike; this is the part that differs.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from litestar import Litestar

from bench.app import NOAUTH_PATH, PING_NOAUTH_PATH, PING_PATH, create_bench_app

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
        # One request at a time, the trivial routes only: the latency the guard adds to a single call. Twice
        # as many rounds: a lone request's wall time moves with the VM's wake-ups more than its CPU does.
        sequential: dict[str, list[float]] = {"ping_guarded": [], "ping_unguarded": []}
        for n in range(2 * rounds):
            names = list(sequential) if n % 2 == 0 else list(reversed(sequential))
            for name in names:
                sequential[name].append(await latency(app, ROUTES[name], keys, requests // 2))
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
        "rounds_1_in_flight": {name: [round(v, 1) for v in values] for name, values in sequential.items()},
    }


if __name__ == "__main__":
    database_url, redis_url, keys_file, org_id = sys.argv[1:5]
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
    key_list = Path(keys_file).read_text().split()
    requests = int(os.environ.get("INPROC_REQUESTS", "2000"))
    rounds = int(os.environ.get("INPROC_ROUNDS", "5"))
    print(json.dumps(uvloop.run(main(key_list, requests, rounds)), indent=2))
