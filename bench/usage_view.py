"""`--only usage`: a key's usage view at its ceiling, on SQLite and PostgreSQL.

One key with 90 days at 1,000 requests per minute over 10 routes and 4 outcomes, written through the fold's
own upserts (`write_counts`) as per-minute counts and their rollups, a day per transaction. Per-minute rows
are written for the days they are kept (USAGE_MINUTE_RETENTION_DAYS); older days get their rollups only,
as the nightly pruning would leave them. Then the usage page (every range) is requested in-process through
the whole app (session, guard, handler, queries, template), and its latency percentiles are reported.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.asgi import create_app
from app.domain.accounts.models import Organization
from app.domain.accounts.services import NewUser, UserService
from app.domain.usage.models import usage_counts, usage_daily, usage_hourly
from app.domain.usage.services import RANGES, CountKey, roll_up, write_counts
from app.lib.db import create_alchemy_config, transaction
from app.settings import Settings
from bench.seed import Seeded, create_postgres_database, drop_postgres_database, seed

DAYS = 90
ROUTES = [f"/api/v1/route-{n}" for n in range(10)]
# Per route and minute (100 requests): the four outcomes at a realistic mix, errors a small share.
PER_ROUTE_MINUTE = {"2xx": 94, "4xx": 4, "429": 1, "5xx": 1}
REQUESTS_PER_MINUTE = len(ROUTES) * sum(PER_ROUTE_MINUTE.values())
WARMUP = 3
SAMPLES = 60
TARGET_P95_MS = 100.0
PASSWORD = "bench-password-123"  # noqa: S105  (a throwaway admin of a throwaway database)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2)


async def seed_usage(settings: Settings, seeded: Seeded, now: datetime) -> dict[str, Any]:
    """The key's 90 days, a day per transaction, through the fold's upserts."""
    key_hex = seeded.key_ids[0].hex
    alchemy = create_alchemy_config(settings)
    rng = random.Random(19)
    started = time.monotonic()
    try:
        async with transaction(alchemy) as session:
            zone_name = await session.scalar(
                select(Organization.time_zone).where(Organization.id == seeded.organization_id)
            )
        zone = ZoneInfo(zone_name or "UTC")
        last_minute = int(now.timestamp() // 60)
        first_minute = last_minute - DAYS * 1440 + 1
        kept_from = last_minute - settings.usage_minute_retention_days * 1440
        for day_start in range(first_minute, last_minute + 1, 1440):
            counts: dict[CountKey, list[int]] = {}
            for minute in range(day_start, min(day_start + 1440, last_minute + 1)):
                for route in ROUTES:
                    for klass, requests in PER_ROUTE_MINUTE.items():
                        counts[(key_hex, minute, "GET", route, klass)] = [
                            requests,
                            requests * rng.randrange(800, 5000),
                        ]
            hourly, daily = roll_up(counts, {key_hex: zone})
            minutes = counts if day_start + 1440 > kept_from else {}
            async with transaction(alchemy) as session:
                await write_counts(await session.connection(), minutes, hourly, daily)
        # What autovacuum would have done by the time anyone looks: visibility map and planner statistics
        # (left to run during the measurement, it would be measured instead).
        async with alchemy.get_engine().connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql(
                "VACUUM ANALYZE" if settings.database_url.startswith("postgresql") else "ANALYZE"
            )
        async with transaction(alchemy) as session:
            rows = {
                table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (usage_counts, usage_hourly, usage_daily)
            }
    finally:
        await alchemy.get_engine().dispose()
    return {"rows": rows, "seconds": round(time.monotonic() - started, 1)}


async def measure_view(settings: Settings, seeded: Seeded) -> dict[str, Any]:
    """Latency of GET /settings/api-keys/{id}/usage?range=… as an admin, in-process through the whole app."""
    alchemy = create_alchemy_config(settings)
    try:
        async with transaction(alchemy) as session:
            organization = await session.get_one(Organization, seeded.organization_id)
            admin = await UserService(session=session).create_user(
                organization, NewUser(f"bench-{uuid.uuid4().hex[:8]}@example.com", PASSWORD, "admin")
            )
            email = admin.email
    finally:
        await alchemy.get_engine().dispose()
    app = create_app(settings)
    results: dict[str, Any] = {}
    async with AsyncTestClient(app) as client:
        await client.get("/login")
        signed_in = await client.post(
            "/login",
            data={"email": email, "password": PASSWORD, "_csrf_token": client.cookies.get("csrftoken")},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        url = f"/settings/api-keys/{seeded.key_ids[0]}/usage"
        times: dict[str, list[float]] = {name: [] for name in RANGES}
        # CPU of this process per request (the app and the test client): what the machine's other load
        # cannot inflate, unlike the wall-clock times on a shared 2-core box.
        cpu: dict[str, list[float]] = {name: [] for name in RANGES}
        shown: dict[str, str | None] = {}
        sizes: dict[str, int] = {}
        # The ranges in turn, so that whatever else the machine does at some moment weighs on each alike.
        for n in range(WARMUP + SAMPLES):
            for name in RANGES:
                started, cpu_started = time.perf_counter(), time.process_time()
                response = await client.get(url, params={"range": name})
                elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
                assert response.status_code == 200, response.text[:500]
                if n >= WARMUP:
                    times[name].append(elapsed)
                    cpu[name].append(cpu_used)
                total = re.search(r'<dd id="total-requests">([^<]*)</dd>', response.text)
                shown[name] = total.group(1) if total else None
                sizes[name] = len(response.content)
        for name, samples in times.items():
            results[name] = {
                "p50_ms": round(sorted(samples)[len(samples) // 2] * 1000, 2),
                "p95_ms": p95(samples),
                "max_ms": round(max(samples) * 1000, 2),
                "cpu_p50_ms": round(sorted(cpu[name])[len(cpu[name]) // 2] * 1000, 2),
                "cpu_p95_ms": p95(cpu[name]),
                "page_bytes": sizes[name],
                "requests_shown": shown[name],
            }
    return results


def leg(settings: Settings) -> dict[str, Any]:
    seeded = seed(settings, 1, 1000)
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    seeding = asyncio.run(seed_usage(settings, seeded, now))
    view = asyncio.run(measure_view(settings, seeded))
    worst = max(entry["p95_ms"] for entry in view.values())
    return {
        "seeded": seeding,
        "view": view,
        "worst_p95_ms": worst,
        "target_p95_ms": TARGET_P95_MS,
        "met": worst <= TARGET_P95_MS,
    }


def run(
    settings_for: Callable[[str, str | None], Settings],
    postgres_admin_url: str | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Both legs (PostgreSQL unless its admin URL is None); each on a fresh database."""
    results: dict[str, Any] = {
        "key": f"{DAYS} days at {REQUESTS_PER_MINUTE} requests/min over {len(ROUTES)} routes and "
        f"{len(PER_ROUTE_MINUTE)} outcomes",
        "samples_per_range": SAMPLES,
    }
    log("usage view: SQLite ...")
    results["sqlite"] = leg(settings_for("usage-sqlite", None))
    log(f"usage view: SQLite worst p95 {results['sqlite']['worst_p95_ms']} ms")
    if postgres_admin_url is not None:
        database_url = create_postgres_database(postgres_admin_url)
        try:
            log("usage view: PostgreSQL ...")
            results["postgres"] = leg(settings_for("usage-postgres", database_url))
            log(f"usage view: PostgreSQL worst p95 {results['postgres']['worst_p95_ms']} ms")
        finally:
            drop_postgres_database(postgres_admin_url, database_url)
    return results
