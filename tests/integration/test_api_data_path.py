"""The API's data path, counted: SQL statements, aiosqlite thread hops and write transactions per request; and
the per-process catalog cache, which must serve a change on the very next request, in every process."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosqlite.core
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine

from app.asgi import create_app
from app.domain.booking.models import Service, package_services
from app.lib import writes as writes_module
from app.lib.writes import writes_for
from app.settings import Settings
from tests.api_helpers import (
    add_package,
    add_services,
    assert_problem,
    bearer,
    make_key,
    recorded_sql,
    service_row,
)
from tests.booking_helpers import add_closure, bookable_service, days_ahead
from tests.fixtures.app import alchemy_of, app_engine, dispose_engines
from tests.fixtures.server import served
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
SERVICES = "/api/v1/services"
PACKAGES = "/api/v1/packages"
AVAILABILITY = "/api/v1/availability"


@contextlib.contextmanager
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every call aiosqlite hands to its connection's thread while the block runs (one hop there and back)."""
    hops: list[Any] = []
    original = aiosqlite.core.Connection._execute

    async def counted(self: aiosqlite.core.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn)
        return await original(self, fn, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(aiosqlite.core.Connection, "_execute", counted)
        yield hops


def without_transaction_control(statements: list[str]) -> list[str]:
    return [s for s in statements if s.split(" ", 1)[0] not in ("BEGIN", "COMMIT", "ROLLBACK")]


async def raw_sql(app: Litestar, sql: str, **values: Any) -> None:
    """A write as an operator would make it, by hand, past every service of the app."""
    async with alchemy_of(app).get_engine().begin() as connection:
        await connection.execute(text(sql), values)


def availability_params(service: Service, days: int = 7) -> dict[str, str]:
    first = days_ahead(1)
    return {
        "service_id": str(service.id),
        "start_date": first.isoformat(),
        "end_date": (first + timedelta(days=days - 1)).isoformat(),
    }


# --- Counting ---------------------------------------------------------------------------------------


async def test_services_is_at_most_two_statements_and_two_thread_hops(
    client: Client, app: Litestar, studio: Staff, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_services(app, studio, service_row(studio, name="Massage"), service_row(studio, name="Yoga"))
    key = await make_key(app, studio)
    for attempt in ("the first, its catalog read", "the next, from the cache"):
        with thread_hops(monkeypatch) as hops, recorded_sql(app) as statements:
            response = await client.get(SERVICES, headers=bearer(key))
        assert response.status_code == 200 and len(response.json()["data"]) == 2
        assert len(statements) <= 2, (attempt, statements)
        assert without_transaction_control(statements) == statements, "reads run without a transaction"
        if settings.is_sqlite:
            assert len(hops) <= 2, (attempt, hops)
    # The counts can fail: the first request did read the catalog, the second only its key.
    assert [s for s in statements if "FROM api_keys" in s] == statements


async def test_postgresql_reads_are_asyncpg_statements_past_sqlalchemy(
    client: Client, app: Litestar, studio: Staff, settings: Settings
) -> None:
    """On PostgreSQL the hot reads (the key lookup, the catalog) go to asyncpg directly: no SQLAlchemy cursor
    execution on any engine, while the statement hooks still see every statement."""
    if settings.is_sqlite:
        pytest.skip("SQLite's hot reads are sqlite3 calls on the event loop (counted in thread hops above)")
    await add_services(app, studio, service_row(studio, name="Massage"))
    key = await make_key(app, studio)
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200  # connections open
    executed: list[str] = []

    def on_cursor(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    await raw_sql(app, "UPDATE organizations SET catalog_version = catalog_version + 1")  # a catalog read
    event.listen(Engine, "before_cursor_execute", on_cursor)
    try:
        with recorded_sql(app) as statements:
            response = await client.get(SERVICES, headers=bearer(key))
    finally:
        event.remove(Engine, "before_cursor_execute", on_cursor)
    assert response.status_code == 200 and [s["name"] for s in response.json()["data"]] == ["Massage"]
    assert len(statements) == 2 and "FROM api_keys" in statements[0], statements
    assert executed == []


async def test_availability_is_at_most_four_statements(
    client: Client, app: Litestar, studio: Staff, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await bookable_service(app, studio)
    await add_closure(app, studio, days_ahead(3), days_ahead(3))
    key = await make_key(app, studio)
    for days in (7, 31):
        with thread_hops(monkeypatch) as hops, recorded_sql(app) as statements:
            response = await client.get(
                AVAILABILITY, params=availability_params(service, days), headers=bearer(key)
            )
        assert response.status_code == 200, response.text
        assert any(day["slots"] for day in response.json()["days"])
        assert len(statements) <= 4, statements
        assert without_transaction_control(statements) == statements
        if settings.is_sqlite:
            assert len(hops) <= len(statements), hops


async def test_a_reservation_is_read_in_two_statements(
    client: Client, app: Litestar, studio: Staff, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    slot = (await client.get(AVAILABILITY, params=availability_params(service), headers=bearer(key))).json()
    start = next(s["start"] for day in slot["days"] for s in day["slots"])
    body = {
        "service_id": str(service.id),
        "start": start,
        "customer": {"name": "Ada", "email": "ada@example.com"},
    }
    created = await client.post(
        "/api/v1/reservations", json=body, headers=bearer(key, **{"Idempotency-Key": "a"})
    )
    assert created.status_code == 201, created.text
    with thread_hops(monkeypatch) as hops, recorded_sql(app) as statements:
        response = await client.get(created.headers["location"], headers=bearer(key))
    assert response.json() == created.json()
    assert len(statements) == 2 and without_transaction_control(statements) == statements, statements
    if settings.is_sqlite:
        assert len(hops) <= 2, hops


# --- The catalog cache ------------------------------------------------------------------------------


async def test_every_kind_of_catalog_write_is_served_on_the_next_request(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    service = await bookable_service(app, studio, name="Massage")
    (other,) = await add_services(app, studio, service_row(studio, name="Yoga"))
    key = await make_key(app, studio)

    async def names() -> list[str]:
        return [item["name"] for item in (await client.get(SERVICES, headers=bearer(key))).json()["data"]]

    async def service_ids_of_packages() -> list[list[str]]:
        listed = (await client.get(PACKAGES, headers=bearer(key))).json()["data"]
        return [item["service_ids"] for item in listed]

    async def free_days() -> list[str]:
        found = await client.get(AVAILABILITY, params=availability_params(service), headers=bearer(key))
        return [day["date"] for day in found.json()["days"] if day["slots"]]

    assert await service_ids_of_packages() == []
    # First: add_package merges the (stale) service objects back.
    package = await add_package(app, studio, [service])
    assert await service_ids_of_packages() == [[str(service.id)]]
    # A change to a package's services alone (package_services has no organization of its own).
    async with alchemy_of(app).get_engine().begin() as connection:
        await connection.execute(insert(package_services).values(package_id=package.id, service_id=other.id))
    assert sorted(map(sorted, await service_ids_of_packages())) == [sorted([str(service.id), str(other.id)])]

    assert sorted(await names()) == ["Massage", "Yoga"]
    await raw_sql(app, "UPDATE services SET name = 'Deep tissue' WHERE name = 'Massage'")
    assert sorted(await names()) == ["Deep tissue", "Yoga"]
    await raw_sql(app, "UPDATE services SET is_active = false WHERE name = 'Yoga'")
    assert await names() == ["Deep tissue"]

    open_days = await free_days()
    assert len(open_days) == 7
    await add_closure(app, studio, days_ahead(2), days_ahead(2))
    assert days_ahead(2).isoformat() not in await free_days()
    await raw_sql(app, "DELETE FROM closures")
    await raw_sql(app, "DELETE FROM opening_hours WHERE weekday = :weekday", weekday=days_ahead(4).weekday())
    assert await free_days() == [day for day in open_days if day != days_ahead(4).isoformat()]

    # Another organization's writes move only its own version.
    other_key = await make_key(app, other_studio)
    assert (await client.get(SERVICES, headers=bearer(other_key))).json()["data"] == []
    await add_services(app, other_studio, service_row(other_studio, name="Theirs"))
    assert [i["name"] for i in (await client.get(SERVICES, headers=bearer(other_key))).json()["data"]] == [
        "Theirs"
    ]
    assert await names() == ["Deep tissue"]


async def test_two_server_processes_serve_a_change_on_their_next_request(
    app: Litestar, studio: Staff, settings: Settings, tmp_path: Path
) -> None:
    """Two `python -m app.server` processes on one database, each with its own catalog cache."""
    await add_services(app, studio, service_row(studio, name="Massage"))
    key = await make_key(app, studio)
    with served(settings, tmp_path) as (first, _), served(settings, tmp_path) as (second, _):
        async with httpx.AsyncClient(timeout=30) as http:

            async def names(server: str) -> list[str]:
                response = await http.get(server + SERVICES, headers=bearer(key))
                return [item["name"] for item in response.json()["data"]]

            for server in (first, second):  # both caches hold the catalog
                assert await names(server) == ["Massage"]
                assert await names(server) == ["Massage"]
            await raw_sql(app, "UPDATE services SET name = 'Deep tissue'")
            for server in (first, second):
                assert await names(server) == ["Deep tissue"]


# --- Bookings ---------------------------------------------------------------------------------------


async def free_starts(
    client: Client | httpx.AsyncClient, key: str, service: Service, days: int = 7
) -> list[str]:
    found = await client.get(AVAILABILITY, params=availability_params(service, days), headers=bearer(key))
    return [slot["start"] for day in found.json()["days"] for slot in day["slots"]]


def booking_body(service: Service, start: str) -> dict[str, Any]:
    return {
        "service_id": str(service.id),
        "start": start,
        "customer": {"name": "Ada", "email": "ada@example.com"},
    }


@contextlib.contextmanager
def transactions(app: Litestar) -> Iterator[list[str]]:
    """ "begin" and "commit" of every transaction on the app's engine and on its write path (the bookings')
    while the block runs."""
    seen: list[str] = []
    engine = app_engine(app).sync_engine
    writes = writes_for(app_engine(app))

    def on_begin(_connection: Any) -> None:
        seen.append("begin")

    def on_commit(_connection: Any) -> None:
        seen.append("commit")

    def on_statement(sql: str, _parameters: Any) -> None:
        verb = sql.split(" ", 1)[0].rstrip(";")
        if verb in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append(verb.lower())

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_commit)
    writes.on_statement = on_statement
    try:
        yield seen
    finally:
        writes.on_statement = None
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "commit", on_commit)


async def test_a_booking_is_one_write_transaction(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = (await free_starts(client, key, service))[0]
    with transactions(app) as seen:
        created = await client.post(
            "/api/v1/reservations",
            json=booking_body(service, start),
            headers=bearer(key, **{"Idempotency-Key": "1"}),
        )
    assert created.status_code == 201, created.text
    assert seen == ["begin", "commit"]
    with transactions(app) as seen:
        replayed = await client.post(
            "/api/v1/reservations",
            json=booking_body(service, start),
            headers=bearer(key, **{"Idempotency-Key": "1"}),
        )
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json() == created.json()
    assert seen == ["begin", "commit"]


async def test_a_booking_is_at_most_eight_statements_in_its_transaction_and_no_thread_hop(
    client: Client, app: Litestar, studio: Staff, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """Forget expired keys, read the key's record, claim it, read the webhook subscribers, lock the service,
    read its occupancy and the latest change, insert, complete the claim (on PostgreSQL in the insert's
    statement): on the write path, on SQLite without a hop to aiosqlite's threads."""
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = (await free_starts(client, key, service))[0]
    with thread_hops(monkeypatch) as hops, recorded_sql(app) as statements:
        created = await client.post(
            "/api/v1/reservations",
            json=booking_body(service, start),
            headers=bearer(key, **{"Idempotency-Key": "counted"}),
        )
    assert created.status_code == 201, created.text
    verbs = [sql.split(" ", 1)[0].rstrip(";") for sql in statements]
    assert verbs.count("BEGIN") == 1 and verbs.count("COMMIT") == 1, statements
    inside = verbs[verbs.index("BEGIN") + 1 : verbs.index("COMMIT")]
    assert len(inside) == (8 if settings.is_sqlite else 7), statements
    if settings.is_sqlite:
        assert hops == []


async def test_sqlite_writers_take_turns_without_waiting_on_the_file_lock(
    settings: Settings, app: Litestar, studio: Staff
) -> None:
    """With SQLite's busy timeout at 0 a writer that met the file lock held would fail at once ("database is
    locked"): 24 concurrent bookings all succeed only because the process's writers queue before BEGIN."""
    if not settings.is_sqlite:
        pytest.skip("PostgreSQL's writers queue on the service's row lock (test_reservation_concurrency.py)")
    service = await bookable_service(app, studio, capacity=24)  # a class: 24 bookings of one slot fit
    key = await make_key(app, studio)
    impatient = create_app(settings)

    @event.listens_for(app_engine(impatient).sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    try:
        # On this test's event loop, so the requests really overlap (the test client serves one at a time).
        transport = httpx.ASGITransport(app=impatient)
        async with (
            impatient.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            start = (await free_starts(client, key, service))[0]
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/reservations",
                        json=booking_body(service, start),
                        headers=bearer(key, **{"Idempotency-Key": f"k{n}"}),
                    )
                    for n in range(24)
                )
            )
    finally:
        await dispose_engines(impatient)
    assert [response.status_code for response in responses] == [201] * 24, [
        r.text for r in responses if r.status_code != 201
    ]


@contextlib.asynccontextmanager
async def served_on_this_loop(settings: Settings) -> Any:
    """The app on this test's event loop, so that requests really overlap (the test client serves one at a
    time, on a loop of its own)."""
    application = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=application)
        async with (
            application.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            yield client
    finally:
        await dispose_engines(application)


@contextlib.contextmanager
def another_process_writing(settings: Settings) -> Iterator[sqlite3.Connection]:
    """SQLite's write lock held by another connection, as the worker's fold or the CLI holds it."""
    other = sqlite3.connect(settings.database_url.split("///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


async def test_a_booking_waits_for_another_process_s_write_lock_without_blocking_the_loop(
    settings: Settings, app: Litestar, studio: Staff
) -> None:
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock: PostgreSQL's writers wait for rows, in the server")
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    async with served_on_this_loop(settings) as client:
        start = (await free_starts(client, key, service))[0]
        with another_process_writing(settings) as other:
            booking = asyncio.create_task(
                client.post(
                    "/api/v1/reservations",
                    json=booking_body(service, start),
                    headers=bearer(key, **{"Idempotency-Key": "waits"}),
                )
            )
            # While the booking waits for the lock, the same loop answers other requests.
            for _ in range(5):
                assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
            assert not booking.done()
            other.execute("COMMIT")
            booked = await booking
    assert booked.status_code == 201, booked.text


async def test_a_booking_that_cannot_get_its_lock_in_time_is_503_and_leaves_nothing(
    settings: Settings, app: Litestar, studio: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: another process holds the write lock; PostgreSQL: another transaction holds the service's row."""
    monkeypatch.setattr(writes_module, "SQLITE_BUSY_TIMEOUT_MS", 30)
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    async with served_on_this_loop(settings) as client:
        start = (await free_starts(client, key, service))[0]
        body, headers = booking_body(service, start), bearer(key, **{"Idempotency-Key": "later"})
        if settings.is_sqlite:
            with another_process_writing(settings):
                refused = await client.post("/api/v1/reservations", json=body, headers=headers)
        else:
            async with alchemy_of(app).get_engine().begin() as other:
                lock = "SELECT id FROM services WHERE id = :id FOR UPDATE"
                await other.execute(text(lock), {"id": service.id})
                refused = await client.post("/api/v1/reservations", json=body, headers=headers)
        assert_problem(refused, 503, "service_unavailable")
        # Nothing of it was kept, its key's claim included: the retry books.
        retried = await client.post("/api/v1/reservations", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


async def test_a_read_on_a_connection_the_server_dropped_is_sent_again(
    client: Client, app: Litestar, studio: Staff, settings: Settings
) -> None:
    """PostgreSQL's read pool has no liveness ping per checkout: after the server drops its connections (a
    restart, an idle timeout) the next request is still answered, on a fresh connection."""
    if settings.is_sqlite:
        pytest.skip("SQLite reads a file on the event loop: there is no connection for a server to drop")
    await add_services(app, studio, service_row(studio, name="Massage"))
    key = await make_key(app, studio)
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200  # the pool holds a connection
    async with alchemy_of(app).get_engine().connect() as connection:
        dropped = await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        assert any(row[0] for row in dropped)
    response = await client.get(SERVICES, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert [item["name"] for item in response.json()["data"]] == ["Massage"]
