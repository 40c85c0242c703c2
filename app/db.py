"""Database engine and advanced-alchemy configuration for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_POOL_SIZE = 32
SQLITE_MAX_OVERFLOW = 32
# Execution option: this connection's transactions write, so SQLite takes its write lock at BEGIN.
SQLITE_BEGIN_IMMEDIATE = "sqlite_begin_immediate"


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        # At most 20 connections, as before, but kept: overflow connections are opened for one checkout and
        # closed on return, which under load means a new connection (TCP, auth) for many requests.
        return create_async_engine(url, pool_size=20, max_overflow=0, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Every pooled aiosqlite connection is a thread: a pool smaller than the requests in flight opens and
    # closes connections (threads, pragmas) over and over under load, so keep enough of them.
    pool = (
        {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_MAX_OVERFLOW}
        if url.database and url.database != ":memory:"
        else {}
    )
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **pool)
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


@asynccontextmanager
async def transaction(alchemy: SQLAlchemyAsyncConfig) -> AsyncIterator[AsyncSession]:
    """A session outside a request (CLI, jobs, seeding): committed on success, rolled back on error."""
    session_maker = alchemy.create_session_maker()
    async with session_maker() as session, session.begin():
        yield session
