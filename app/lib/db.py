"""Database engine and advanced-alchemy configuration for SQLite and PostgreSQL, and the ways in.

One idiom per job:
* Staff CRUD (pages, CLI): advanced-alchemy services, on the request's session (or `transaction` outside one);
  a request that may write begins that session as a writer (`begin_writing`).
* Public API reads (catalog, availability, a reservation): the hot read path (app.lib.reads, through
  app.domain.booking.reads): compiled SELECTs with no transaction, on sqlite3 on the loop or on asyncpg.
* Bookings: the write path (app.lib.writes, `writes_for(engine).transaction()`): one short transaction of
  Core statements compiled once and run on the driver (on SQLite a sqlite3 connection on the event loop, on
  PostgreSQL asyncpg calls on a pooled connection), no session or ORM objects.
* Cancellations: `write_transaction(engine)`, one short transaction on a session of its own, committed
  before the request ends. On SQLite both take turns on the process's asyncio lock (`write_lock`) instead
  of busy-waiting on the database's file lock.
* The API key lookup: `KeyStore` (app.domain.api_keys.authentication), one read path per database.
* The worker's usage fold: statements compiled once and run with executemany on driver values
  (app.domain.usage.services), its throughput being the worker's.
* The health check: one `SELECT 1` on the hot read path (app.lib.reads).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_POOL_SIZE = 32
SQLITE_MAX_OVERFLOW = 32
# Execution option: this connection's transactions write, so SQLite takes its write lock at BEGIN.
SQLITE_BEGIN_IMMEDIATE = "sqlite_begin_immediate"
# Route opt: the handler writes in `write_transaction`, so its request's session must not hold SQLite's
# write lock (the staff guard begins every other unsafe request's session as a writer, `begin_writing`).
OWN_WRITE_TRANSACTION = "own_write_transaction"


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        # At most 20 connections, all kept: overflow connections are opened for one checkout and closed on
        # return, which under load means a new connection (TCP, auth) for many requests.
        return create_async_engine(
            url, pool_size=20, max_overflow=0, pool_pre_ping=True, hide_parameters=True
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Every pooled aiosqlite connection is a thread: a pool smaller than the requests in flight opens and
    # closes connections (threads, pragmas) over and over under load, so keep enough of them.
    pool = (
        {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_MAX_OVERFLOW}
        if url.database and url.database != ":memory:"
        else {}
    )
    engine = create_async_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True, **pool
    )
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(SQLITE_BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for transactions that read then write and must not interleave.

    On SQLite they begin with BEGIN IMMEDIATE: writers queue for the busy timeout, one at a time, instead of
    a deferred transaction failing with "database is locked" when it upgrades to write. PostgreSQL ignores the
    option; lock rows there (SELECT ... FOR UPDATE).
    """
    return engine.execution_options(**{SQLITE_BEGIN_IMMEDIATE: True})


def create_alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    return SQLAlchemyAsyncConfig(
        engine_instance=create_engine(settings),
        # Commit on 2xx and 3xx (POST-redirect-GET), roll back otherwise.
        before_send_handler="autocommit_include_redirects",
        session_config=AsyncSessionConfig(expire_on_commit=False),
        create_all=False,
    )


async def begin_writing(session: AsyncSession) -> None:
    """Begin `session`'s transaction as a writer, before its first query.

    A deferred SQLite transaction that has read cannot wait for the write lock: if another connection
    committed since its read, its first write fails at once with "database is locked", whatever the busy
    timeout. BEGIN IMMEDIATE takes the lock first and waits its turn. PostgreSQL ignores the option.
    """
    await session.connection(execution_options={SQLITE_BEGIN_IMMEDIATE: True})


@asynccontextmanager
async def own_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A transaction of its own on `engine`, apart from the request's session: committed when the block ends."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        yield session


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A transaction of its own that reads then writes (`writer_engine`), committed when the block ends.

    On SQLite, which has one write lock per database, this process's write transactions take turns on an
    asyncio lock first: a waiting writer costs nothing until its turn, where BEGIN IMMEDIATE would retry the
    file lock for up to the busy timeout (and fail with "database is locked" under enough writers). Other
    processes' writers still meet at the file lock. PostgreSQL needs no such queue (lock rows there).
    """
    if engine.dialect.name != "sqlite":
        async with own_transaction(writer_engine(engine)) as session:
            yield session
        return
    async with write_lock(engine), own_transaction(writer_engine(engine)) as session:
        yield session


def write_lock(engine: AsyncEngine) -> asyncio.Lock:
    """The lock this process's SQLite write transactions take turns on (`write_transaction`, and the
    booking's write path, app.lib.writes): one per engine."""
    lock = _WRITE_LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
    return lock


@asynccontextmanager
async def transaction(alchemy: SQLAlchemyAsyncConfig) -> AsyncIterator[AsyncSession]:
    """A session outside a request (CLI, jobs, seeding) that may write (`begin_writing`): committed on
    success, rolled back on error."""
    session_maker = alchemy.create_session_maker()
    async with session_maker() as session, session.begin():
        await begin_writing(session)
        yield session
