"""End to end: every public endpoint through the production server command against the framework's own speed.

The product is `python -m app.server` (the Procfile's web: uvicorn on uvloop and httptools, APP_ENV=production,
no access log) on a migrated database with the demo studio, its opening hours, a package and a bookable
5-minute service, 2,000 keys, the embedded Valkey and the SAQ worker. The bare side is `python -m bench.bare`
on the same server options, answering the very bytes the product answered at start (captured once per
endpoint). wrk sends both the same requests (each with the next key); rounds are interleaved A B B A per
endpoint (product, bare, bare, product). Bookings (`POST /api/v1/reservations`) carry a distinct
Idempotency-Key and a distinct free slot each, at 32 concurrent writers: one long product run between two bare
ones. The figure is the ratio of the product's 2xx requests/s to the bare app's, with p50/p99 and the errors
(5xx, 409) of the product's runs, and where each side's CPU goes per request (the server, the SAQ worker,
Valkey, wrk) with the box's cores busy: on a box where all of them share two cores, that is what bounds what
a second process can add.

Legs: SQLite with 1 pinned process (CPU0; wrk, Valkey and the worker on CPU1) for every endpoint; SQLite with 2
processes on both cores (as wrk and the worker; Valkey stays on CPU1 with the bench) for /services and /health,
where /services also runs both apps as 1 pinned process in the same rounds, so that the 2-process gain compares
rounds seconds apart, not legs minutes apart; PostgreSQL with 1 pinned process for /services and a booking.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from redis import Redis
from sqlalchemy import select

from app.domain.booking.models import OpeningHours, Package, Service
from app.lib.db import create_alchemy_config, transaction
from app.settings import Settings
from bench.seed import Seeded, seed, write_keys
from bench.servers import (
    BIN,
    Process,
    _spawn,
    busy_seconds,
    free_port,
    pid_cpu_seconds,
    pinned,
    set_affinity,
    start_worker,
    wait_until_healthy,
)
from bench.wrk import WrkResult, run_wrk

if TYPE_CHECKING:
    from bench.run import Bench

# The unpinned legs' processes: every core. Not the affinity they would inherit, which is the bench's own
# (CPU1, where it keeps Valkey and the load generator): two web processes on one core measure nothing.
EVERY_CPU = ",".join(str(cpu) for cpu in range(os.cpu_count() or 1))
# The endpoint whose 2-process gain is a target: measured against 1 process in the same rounds.
SCALING_PATH = "/api/v1/services"
SLOTS_PER_DAY = 180  # 5-minute slots from 06:00 to 21:00 UTC: inside 06:00-22:00 London time all year
BOOKING_LUA = r"""
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
local service = os.getenv("BENCH_SERVICE")
local base = tonumber(os.getenv("BENCH_BASE"))
local first = tonumber(os.getenv("BENCH_SLOT_FIRST"))
local stride = tonumber(os.getenv("BENCH_THREADS"))
local threads = {}
local count = 0
statuses = {}

function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

local n = 0
request = function()
  local slot = first + n * stride + id
  n = n + 1
  local day = math.floor(slot / 180)
  local t = base + day * 86400 + 6 * 3600 + (slot % 180) * 300
  local body = string.format(
    '{"service_id":"%s","start":"%s","customer":{"name":"Bench","email":"bench@example.com"}}',
    service, os.date("!%Y-%m-%dT%H:%M:%S+00:00", t))
  local key = keys[(slot % #keys) + 1]
  return wrk.format("POST", nil, {
    ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "slot-" .. slot}, body)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
"""


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # with its query string
    route: str = ""  # the bare app's route, when it has a path parameter


def _done_block() -> str:
    """wrk's `done` of the rotating-keys script: the same BENCHJSON line."""
    from bench.wrk import LUA

    return LUA[LUA.index("done = function") :]


async def _extra_seed(settings: Settings, seeded: Seeded) -> uuid.UUID:
    """Opening hours every day 06:00-22:00, a package of two services, and a 5-minute bookable service."""
    alchemy = create_alchemy_config(settings)
    try:
        async with transaction(alchemy) as session:
            organization_id = seeded.organization_id
            session.add_all(
                OpeningHours(
                    organization_id=organization_id,
                    weekday=weekday,
                    opens_at=clock_time(6),
                    closes_at=clock_time(22),
                )
                for weekday in range(7)
            )
            services = list(
                await session.scalars(
                    select(Service.id).where(Service.organization_id == organization_id).order_by(Service.id)
                )
            )
            slot = Service(
                organization_id=organization_id,
                name="Bench slot",
                description="Five minutes, for the booking benchmark.",
                duration_minutes=5,
                price_amount=0,
                currency="GBP",
                capacity=1,
                slot_interval_minutes=5,
                min_notice_minutes=0,
                booking_horizon_days=400,
            )
            session.add(slot)
            await session.flush()
            package = Package(
                organization_id=organization_id,
                name="Ten classes",
                description="",
                session_count=10,
                validity_days=180,
                price_amount=12000,
                currency="GBP",
            )
            package.services = [await session.get_one(Service, service_id) for service_id in services[:2]]
            session.add(package)
            return slot.id
    finally:
        await alchemy.get_engine().dispose()


def _get(
    url: str, key: str | None, method: str = "GET", body: bytes | None = None, **headers: str
) -> tuple[int, str, bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method, data=body)  # noqa: S310  (loopback)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, response.headers.get_content_type(), response.read(), dict(response.headers)


class EndToEnd:
    def __init__(
        self, bench: Bench, seconds: float, booking_s: float, endpoints: Collection[str] | None = None
    ) -> None:
        self.bench = bench
        # For working on one endpoint: the names that contain one of these (None: every endpoint).
        self.endpoints = endpoints
        self.seconds = seconds
        self.booking_s = booking_s
        self.booking_script = bench.tmp / "booking.lua"
        self.booking_script.write_text(BOOKING_LUA + _done_block())
        self.next_slot = 0
        self.base = int(
            datetime.combine(datetime.now(UTC).date() + timedelta(days=1), clock_time(), UTC).timestamp()
        )

    def prepare(self, name: str, database_url: str | None) -> tuple[Settings, Seeded, Path, uuid.UUID]:
        import asyncio

        settings = self.bench.settings_for(name, database_url)
        seeded = seed(settings, self.bench.plan.keys, rate_limit=1000)
        slot_service = asyncio.run(_extra_seed(settings, seeded))
        keys_file = write_keys(seeded, self.bench.tmp / f"{name}-keys.txt")
        return settings, seeded, keys_file, slot_service

    def env(self, settings: Settings, workers: int, port: int) -> dict[str, str]:
        return {
            "APP_ENV": "production",
            "DATA_DIR": str(settings.data_dir),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": self.bench.redis_url,
            "SECRET_KEY": "bench-secret-" + "x" * 40,
            "WEB_CONCURRENCY": str(workers),
            "PORT": str(port),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def start(self, name: str, module: str, env: dict[str, str], cpus: str | None) -> Process:
        process = _spawn(name, pinned(cpus, [str(BIN / "python"), "-m", module]), env, self.bench.tmp)
        self.bench.processes.append(process)
        wait_until_healthy(int(env["PORT"]), process)
        return process

    def start_bare(
        self, name: str, settings: Settings, workers: int, port: int, answers: Path, cpus: str | None
    ) -> Process:
        """The bare app, answering the bytes in `answers` (captured from the product)."""
        env = {**self.env(settings, workers, port), "BENCH_BARE_FILE": str(answers)}
        return self.start(name, "bench.bare", env, cpus)

    def capture(
        self, port: int, key: str, slot_service: uuid.UUID, services: list[str]
    ) -> tuple[dict[str, Any], list[Endpoint]]:
        """The product's answers, once per endpoint: the bare app will serve exactly these bytes."""
        first = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
        week = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
        month = (datetime.now(UTC).date() + timedelta(days=31)).isoformat()
        url = f"http://127.0.0.1:{port}"
        # A slot the booking runs never ask for (they go day by day from tomorrow).
        start = datetime.fromtimestamp(self.base + 398 * 86400 + 10 * 3600, UTC).isoformat()
        self.next_slot = 0
        body = json.dumps(
            {
                "service_id": str(slot_service),
                "start": start,
                "customer": {"name": "Bench", "email": "bench@example.com"},
            }
        ).encode()
        status, media, created, _ = _get(
            f"{url}/api/v1/reservations",
            key,
            "POST",
            body,
            Content_Type="application/json",
            Idempotency_Key=str(uuid.uuid4()),
        )
        assert status == 201, created
        reservation = json.loads(created)["id"]
        endpoints = [
            Endpoint("GET /api/v1/services", "GET", "/api/v1/services"),
            Endpoint(
                "GET /api/v1/services/{id}",
                "GET",
                f"/api/v1/services/{services[0]}",
                "/api/v1/services/{item:str}",
            ),
            Endpoint("GET /api/v1/packages", "GET", "/api/v1/packages"),
            Endpoint(
                "GET /api/v1/availability (7 days)",
                "GET",
                f"/api/v1/availability?service_id={services[0]}&start_date={first}&end_date={week}",
            ),
            Endpoint(
                "GET /api/v1/availability (31 days)",
                "GET",
                f"/api/v1/availability?service_id={services[0]}&start_date={first}&end_date={month}",
            ),
            Endpoint(
                "GET /api/v1/reservations/{id}",
                "GET",
                f"/api/v1/reservations/{reservation}",
                "/api/v1/reservations/{item:str}",
            ),
            Endpoint("GET /health", "GET", "/health"),
        ]
        answers: dict[str, Any] = {
            "POST /api/v1/reservations": {
                "status": 201,
                "media_type": media,
                "body": base64.b64encode(created).decode(),
            }
        }
        for endpoint in endpoints:
            status, media, content, _ = _get(url + endpoint.path, None if endpoint.path == "/health" else key)
            assert status == 200, (endpoint, content)
            answers[f"GET {endpoint.route or endpoint.path.split('?')[0]}"] = {
                "status": status,
                "media_type": media,
                "body": base64.b64encode(content).decode(),
                "bytes": len(content),
            }
        return answers, endpoints

    def run(self, port: int, path: str, keys_file: Path, seconds: float, workers: int) -> WrkResult:
        pinned_run = workers == 1
        return run_wrk(
            self.bench.wrk,
            self.bench.script,
            keys_file,
            f"http://127.0.0.1:{port}{path}",
            seconds,
            connections=32 if pinned_run else 64,
            threads=1 if pinned_run else 2,
            cpus="1" if pinned_run else EVERY_CPU,
        )

    def book(
        self, port: int, keys_file: Path, slot_service: uuid.UUID, seconds: float, workers: int, books: bool
    ) -> WrkResult:
        """Bookings of slots from `next_slot` on; `books`: the product's run, whose slots are then used up
        (the bare app books nothing, so its runs may send the same slots)."""
        threads = 1 if workers == 1 else 2
        os.environ.update(
            BENCH_SERVICE=str(slot_service),
            BENCH_BASE=str(self.base),
            BENCH_SLOT_FIRST=str(self.next_slot),
            BENCH_THREADS=str(threads),
        )
        result = run_wrk(
            self.bench.wrk,
            self.booking_script,
            keys_file,
            f"http://127.0.0.1:{port}/api/v1/reservations",
            seconds,
            connections=32,
            threads=threads,
            cpus="1" if workers == 1 else EVERY_CPU,
        )
        if books:
            # Each thread's n-th request takes slot first + n * threads + its id; a thread sends at most all
            # the requests counted plus those still in flight when wrk stopped.
            self.next_slot += threads * (result.requests + 32 + 1)
        return result

    def leg(
        self,
        name: str,
        database_url: str | None,
        workers: int,
        only: set[str] | None,
        booking_s: float | None,
    ) -> dict[str, Any]:
        settings, seeded, keys_file, slot_service = self.prepare(name, database_url)
        cpus = "0" if workers == 1 else EVERY_CPU
        product_port, bare_port = free_port(), free_port()
        worker = start_worker(
            f"{name}-worker",
            {**self.env(settings, workers, product_port)},
            "1" if workers == 1 else EVERY_CPU,
            self.bench.tmp,
        )
        self.bench.processes.append(worker)
        product = self.start(f"{name}-product", "app.server", self.env(settings, workers, product_port), cpus)
        services = [
            item["id"]
            for item in json.loads(
                _get(f"http://127.0.0.1:{product_port}/api/v1/services", seeded.keys[0])[2]
            )["data"]
        ]
        answers, endpoints = self.capture(product_port, seeded.keys[0], slot_service, services)
        bare_file = self.bench.tmp / f"{name}-bare.json"
        bare_file.write_text(json.dumps(answers))
        bare = self.start_bare(f"{name}-bare", settings, workers, bare_port, bare_file, cpus)
        valkey_info = cast(dict[str, Any], Redis.from_url(self.bench.redis_url).info("server"))
        meter = CpuMeter(worker, int(valkey_info["process_id"]))
        out: dict[str, Any] = {
            "processes": workers,
            "database": "postgresql" if database_url else "sqlite",
            "endpoints": {},
        }
        # The 2-process leg also runs both apps as one pinned process, for the gain measured in one window.
        singles: tuple[tuple[Process, int], tuple[Process, int]] | None = None
        if workers > 1:
            product_1_port, bare_1_port = free_port(), free_port()
            product_1 = self.start(
                f"{name}-product-1", "app.server", self.env(settings, 1, product_1_port), "0"
            )
            bare_1 = self.start_bare(f"{name}-bare-1", settings, 1, bare_1_port, bare_file, "0")
            singles = ((product_1, product_1_port), (bare_1, bare_1_port))
        try:
            for endpoint in endpoints:
                if (only is not None and endpoint.name not in only) or not self.selected(endpoint.name):
                    continue
                if singles is not None and endpoint.path == SCALING_PATH:
                    out["endpoints"][endpoint.name], out["scaling"] = self.scaling(
                        endpoint.path, singles, ((product, product_port), (bare, bare_port)), keys_file, meter
                    )
                    scaling = out["scaling"]
                    _log(
                        f"  {name} {endpoint.name}, 1 vs 2 processes in the same rounds: product "
                        f"{scaling['product_gain']:.2f}x, bare {scaling['bare_gain']:.2f}x"
                    )
                else:
                    out["endpoints"][endpoint.name] = self.abba(
                        endpoint.path, (product, product_port), (bare, bare_port), keys_file, workers, meter
                    )
                entry = out["endpoints"][endpoint.name]
                _log(
                    f"  {name} {endpoint.name}: {entry['product_rps']:.0f} vs {entry['bare_rps']:.0f} req/s = {entry['ratio']:.3f}"
                )
            if booking_s and self.selected("POST /api/v1/reservations"):
                out["endpoints"]["POST /api/v1/reservations"] = self.booking(
                    product_port, bare_port, keys_file, slot_service, booking_s, workers
                )
                entry = out["endpoints"]["POST /api/v1/reservations"]
                _log(
                    f"  {name} POST: {entry['product_rps']:.0f} vs {entry['bare_rps']:.0f} = {entry['ratio']:.3f} {entry['product_statuses']}"
                )
            out["cpu0_used_by_others_note"] = (
                "see the guard section's cpu0_used_by_others_pct for the box's load"
            )
        finally:
            for process in (bare, product, worker, *(server for server, _ in singles or ())):
                self.bench.stop(process)
        return out

    def selected(self, endpoint: str) -> bool:
        return self.endpoints is None or any(part in endpoint for part in self.endpoints)

    def abba(
        self,
        path: str,
        product: tuple[Process, int],
        bare: tuple[Process, int],
        keys_file: Path,
        workers: int,
        meter: CpuMeter,
    ) -> dict[str, Any]:
        """Product and bare (each a process and its port) in rounds A B B A, after a warm-up of each."""
        for _, port in (product, bare):
            self.run(port, path, keys_file, 1, workers)
        rounds: dict[str, list[tuple[WrkResult, dict[str, float]]]] = {"product": [], "bare": []}
        for side in ("product", "bare", "bare", "product"):
            server, port = product if side == "product" else bare
            rounds[side].append(
                meter.round(server, partial(self.run, port, path, keys_file, self.seconds, workers))
            )
        return {
            **_summary([result for result, _ in rounds["product"]], [result for result, _ in rounds["bare"]]),
            "product_cpu": _cpu_per_request(rounds["product"]),
            "bare_cpu": _cpu_per_request(rounds["bare"]),
        }

    def scaling(
        self,
        path: str,
        one: tuple[tuple[Process, int], tuple[Process, int]],
        two: tuple[tuple[Process, int], tuple[Process, int]],
        keys_file: Path,
        meter: CpuMeter,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Each app as one pinned process and as two, in the rounds P1 P2 B2 B1 B1 B2 P2 P1 (P product, B bare,
        after a warm-up of each): a box that speeds up or slows down during the leg moves both sides of each
        gain alike. The SAQ worker shares CPU1 with wrk in the 1-process rounds, as in the 1-process leg, and
        both cores in the others. Returns the 2-process entry (product against bare) and the gains."""
        servers = {("product", 1): one[0], ("bare", 1): one[1], ("product", 2): two[0], ("bare", 2): two[1]}
        for (_, workers), (_, port) in servers.items():
            self.run(port, path, keys_file, 1, workers)
        rounds: dict[tuple[str, int], list[tuple[WrkResult, dict[str, float]]]] = {key: [] for key in servers}
        order = [("product", 1), ("product", 2), ("bare", 2), ("bare", 1)]
        in_turn = order + order[::-1]
        for side, workers in in_turn:
            server, port = servers[side, workers]
            set_affinity(meter.worker.pid, "1" if workers == 1 else EVERY_CPU)
            rounds[side, workers].append(
                meter.round(server, partial(self.run, port, path, keys_file, self.seconds, workers))
            )
        set_affinity(meter.worker.pid, EVERY_CPU)

        def rps(key: tuple[str, int]) -> float:
            return statistics.mean(result.ok_rps for result, _ in rounds[key])

        gains = {
            "order": " ".join(f"{side[0].upper()}{workers}" for side, workers in in_turn),
            "product_1_rps": round(rps(("product", 1)), 1),
            "product_2_rps": round(rps(("product", 2)), 1),
            "bare_1_rps": round(rps(("bare", 1)), 1),
            "bare_2_rps": round(rps(("bare", 2)), 1),
            "rounds_rps": {
                f"{side}_{workers}": [round(result.ok_rps, 1) for result, _ in rounds[side, workers]]
                for side, workers in order
            },
            "product_gain": round(rps(("product", 2)) / max(rps(("product", 1)), 1e-9), 3),
            "bare_gain": round(rps(("bare", 2)) / max(rps(("bare", 1)), 1e-9), 3),
            "product_1_cpu": _cpu_per_request(rounds["product", 1]),
            "bare_1_cpu": _cpu_per_request(rounds["bare", 1]),
        }
        entry = {
            **_summary(
                [result for result, _ in rounds["product", 2]], [result for result, _ in rounds["bare", 2]]
            ),
            "product_cpu": _cpu_per_request(rounds["product", 2]),
            "bare_cpu": _cpu_per_request(rounds["bare", 2]),
        }
        return entry, gains

    def booking(
        self,
        product_port: int,
        bare_port: int,
        keys_file: Path,
        slot_service: uuid.UUID,
        seconds: float,
        workers: int,
    ) -> dict[str, Any]:
        bare = [self.book(bare_port, keys_file, slot_service, self.seconds, workers, books=False)]
        product = [self.book(product_port, keys_file, slot_service, seconds, workers, books=True)]
        bare.append(self.book(bare_port, keys_file, slot_service, self.seconds, workers, books=False))
        return {**_summary(product, bare), "order": "bare, product (one long run), bare", "writers": 32}


@dataclass
class CpuMeter:
    """Where a round's CPU goes: the server (with its worker processes), the SAQ worker, Valkey, wrk (a child
    of this process, counted once reaped) and the whole box. Read around each round; its difference over the
    round's 2xx requests is each part's CPU per request, and the box's over the round's length the cores used.
    """

    worker: Process
    valkey_pid: int

    def read(self, server: Process) -> dict[str, float]:
        return {
            "server": server.cpu_seconds(),
            "worker": self.worker.cpu_seconds(),
            "valkey": pid_cpu_seconds(self.valkey_pid),
            "wrk": _reaped_children_cpu_seconds(),
            "box": busy_seconds(),
        }

    def round(self, server: Process, run: Callable[[], WrkResult]) -> tuple[WrkResult, dict[str, float]]:
        before = self.read(server)
        result = run()
        after = self.read(server)
        return result, {part: after[part] - before[part] for part in before}


def _reaped_children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_per_request(rounds: list[tuple[WrkResult, dict[str, float]]]) -> dict[str, float]:
    """Each part's CPU µs per 2xx request over the rounds, and the box's cores busy on average."""
    requests = sum(result.ok for result, _ in rounds) or 1
    seconds = sum(result.duration_s for result, _ in rounds) or 1.0
    out = {
        f"{part}_us": round(sum(cpu[part] for _, cpu in rounds) / requests * 1e6, 1)
        for part in ("server", "worker", "valkey", "wrk")
    }
    out["box_cores_busy"] = round(sum(cpu["box"] for _, cpu in rounds) / seconds, 2)
    return out


def _summary(product: list[WrkResult], bare: list[WrkResult]) -> dict[str, Any]:
    product_rps = statistics.mean(result.ok_rps for result in product)
    bare_rps = statistics.mean(result.ok_rps for result in bare)
    statuses: dict[str, int] = {}
    for result in product:
        for status, n in result.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    return {
        "product_rps": round(product_rps, 1),
        "bare_rps": round(bare_rps, 1),
        "ratio": round(product_rps / max(bare_rps, 1e-9), 4),
        "product_p50_ms": round(statistics.median(result.p50_ms for result in product), 2),
        "product_p99_ms": round(max(result.p99_ms for result in product), 2),
        "bare_p50_ms": round(statistics.median(result.p50_ms for result in bare), 2),
        "bare_p99_ms": round(max(result.p99_ms for result in bare), 2),
        "product_requests": sum(result.requests for result in product),
        "product_statuses": statuses,
        "product_5xx": sum(n for status, n in statuses.items() if status.startswith("5")),
        "product_409": statuses.get("409", 0),
        "product_4xx": sum(n for status, n in statuses.items() if status.startswith("4")),
        "product_socket_errors": sum(result.socket_errors for result in product),
        "bare_errors": sum(result.errors for result in bare),
        "runs": {"product": [r.summary() for r in product], "bare": [r.summary() for r in bare]},
    }


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


TARGETS = {
    "GET /api/v1/services": 0.30,
    "GET /api/v1/packages": 0.30,
    "GET /api/v1/services/{id}": 0.25,
    "GET /api/v1/reservations/{id}": 0.25,
    "GET /api/v1/availability (7 days)": 0.10,
    "GET /api/v1/availability (31 days)": 0.04,
    "POST /api/v1/reservations": 0.03,
    "GET /health": 0.5,
}


LEGS = ("sqlite-1", "sqlite-2", "postgres-1")


def endtoend(
    bench: Bench,
    postgres_url: str | None,
    seconds: float,
    booking_s: float,
    postgres_booking_s: float,
    legs: Collection[str] = LEGS,
    endpoints: Collection[str] | None = None,
) -> dict[str, Any]:
    """The three legs (or those in `legs`, with the endpoints whose names contain one of `endpoints`: for
    working on one; the full run measures all); `postgres_url` None skips PostgreSQL."""
    from bench.seed import create_postgres_database, drop_postgres_database

    e2e = EndToEnd(bench, seconds, booking_s, endpoints)
    results: dict[str, Any] = {}
    if "sqlite-1" in legs:
        _log("end to end: SQLite, 1 process")
        results["sqlite_1_process"] = e2e.leg("e2e-sqlite-1", None, 1, None, booking_s)
    if "sqlite-2" in legs:
        _log("end to end: SQLite, 2 processes")
        results["sqlite_2_processes"] = e2e.leg(
            "e2e-sqlite-2", None, 2, {"GET /api/v1/services", "GET /health"}, None
        )
    if postgres_url is not None and "postgres-1" in legs:
        _log("end to end: PostgreSQL, 1 process")
        database_url = create_postgres_database(postgres_url)
        try:
            # /services and bookings, the two with PostgreSQL targets (its /health, measured until 2026-12-03
            # at 0.22-0.27, is left out to keep make bench under 10 minutes).
            results["postgres_1_process"] = e2e.leg(
                "e2e-postgres-1", database_url, 1, {"GET /api/v1/services"}, postgres_booking_s
            )
        finally:
            drop_postgres_database(postgres_url, database_url)
    one = results.get("sqlite_1_process", {}).get("endpoints", {})
    two = results.get("sqlite_2_processes", {}).get("endpoints", {})
    scaling = results.get("sqlite_2_processes", {}).get("scaling")
    if scaling is not None:
        # The gains measured in one window (EndToEnd.scaling): the target's figure.
        results["two_vs_one_process_services"] = scaling["product_gain"]
        # What the box gives a second process: the bare app's own gain, in the same rounds.
        results["bare_two_vs_one_process_services"] = scaling["bare_gain"]
        results["product_scaling_vs_bare"] = round(
            scaling["product_gain"] / max(scaling["bare_gain"], 1e-9), 3
        )
    if "GET /api/v1/services" in one and "GET /api/v1/services" in two:
        # The same gain across legs minutes apart, which the box's drift moves: shown beside, not judged.
        results["two_vs_one_process_services_across_legs"] = round(
            two["GET /api/v1/services"]["product_rps"]
            / max(one["GET /api/v1/services"]["product_rps"], 1e-9),
            3,
        )
    met = {}
    for name, target in TARGETS.items():
        if name in one:
            entry = one[name]
            ok = entry["ratio"] >= target
            if name.startswith("POST"):
                ok = (
                    ok
                    and entry["product_5xx"] == 0
                    and entry["product_4xx"] == 0
                    and entry["product_p99_ms"] <= 250
                )
            met[f"sqlite_1 {name} >= {target}"] = ok
    if "postgres_1_process" in results:
        pg = results["postgres_1_process"]["endpoints"]
        if "GET /api/v1/services" in pg:
            met["postgres /services >= 0.20"] = pg["GET /api/v1/services"]["ratio"] >= 0.20
        if "POST /api/v1/reservations" in pg:
            post = pg["POST /api/v1/reservations"]
            met["postgres bookings >= 0.02, zero 5xx"] = post["ratio"] >= 0.02 and post["product_5xx"] == 0
    if "two_vs_one_process_services" in results:
        met["2 processes >= 1.6x 1 for /services"] = results["two_vs_one_process_services"] >= 1.6
    results["targets_met"] = met
    return results


def table(results: dict[str, Any]) -> str:
    """The end-to-end table as docs/BENCHMARKS.md shows it."""
    lines = [
        "| leg | endpoint | product 2xx req/s | bare req/s | ratio | product p50 / p99 ms | 5xx | 409 | other 4xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for leg in ("sqlite_1_process", "sqlite_2_processes", "postgres_1_process"):
        if leg not in results:
            continue
        for name, entry in results[leg]["endpoints"].items():
            lines.append(
                f"| {leg.replace('_', ' ')} | `{name}` | {entry['product_rps']:.0f} | {entry['bare_rps']:.0f} | "
                f"{entry['ratio']:.3f} | {entry['product_p50_ms']} / {entry['product_p99_ms']} | "
                f"{entry['product_5xx']} | {entry['product_409']} | {entry['product_4xx'] - entry['product_409']} |"
            )
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    """Where the CPU goes, per 2xx request: the server, the SAQ worker, Valkey and wrk; and the box's cores busy."""
    lines = [
        "| leg | endpoint | side | server µs | worker µs | Valkey µs | wrk µs | cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for leg in ("sqlite_1_process", "sqlite_2_processes", "postgres_1_process"):
        for name, entry in results.get(leg, {}).get("endpoints", {}).items():
            for side in ("product", "bare"):
                cpu = entry.get(f"{side}_cpu")
                if cpu is None:
                    continue
                lines.append(_cpu_row(leg.replace("_", " "), name, side, cpu))
    scaling = results.get("sqlite_2_processes", {}).get("scaling")
    for side in ("product", "bare") if scaling else ():
        lines.append(
            _cpu_row(
                "sqlite 2 processes, its 1-process rounds",
                f"GET {SCALING_PATH}",
                side,
                scaling[f"{side}_1_cpu"],
            )
        )
    return "\n".join(lines)


def _cpu_row(leg: str, endpoint: str, side: str, cpu: dict[str, float]) -> str:
    return (
        f"| {leg} | `{endpoint}` | {side} | {cpu['server_us']} | {cpu['worker_us']} | {cpu['valkey_us']} | "
        f"{cpu['wrk_us']} | {cpu['box_cores_busy']} |"
    )
