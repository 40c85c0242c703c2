"""The hot read path: SELECTs with no transaction, no ORM objects and as few driver calls as there can be.

One `Reads` per app engine (`reads_for(engine)`), its path chosen once by the database it reads:

* SQLite file: a read-only sqlite3 connection of its own, queried on the event loop. An indexed SELECT takes
  microseconds, less than one hop to aiosqlite's thread and back, and in autocommit mode it needs no BEGIN and
  ROLLBACK and sees the latest committed rows. It never waits for a lock on the loop: when SQLite is busy
  (rare in WAL mode), the same statement goes through the app's engine, which waits in its own thread.
* PostgreSQL (asyncpg): the driver connections of an AUTOCOMMIT pool of its own (`_PgReads`), on which each
  read is one asyncpg statement, outside any transaction, with no liveness ping; asyncpg prepares a
  statement once per connection and keeps it (its statement cache). SQLAlchemy's Core execute (compile
  cache lookup, result machinery, a greenlet around the statement) cost several times the round trip. A read
  on a connection the server dropped is sent once more on a fresh one.
* Anything else (an in-memory SQLite database, no file another connection could open): the app's own engine.

Statements are compiled once (`Query`, for the engine's dialect: `$1` parameters for asyncpg). On the
sqlite3 and asyncpg paths rows arrive as the driver returns them and are decoded by the columns' own
SQLAlchemy types (`processors`, the ones SQLAlchemy would apply; the asyncpg connections have the dialect's
JSON codecs), so callers may decode lazily, or once per distinct row. Whoever wants to see the statements
passes a hook to `raw` / `rows`: it is called with the SQL and parameters of every statement, on whichever
path runs it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import SelectBase

Row = tuple[Any, ...]
Processor = Callable[[Any], Any]
StatementHook = Callable[[str, tuple[Any, ...]], None]
"""Called with a statement's SQL and parameters just before it is sent to the database."""
# A SELECT or a UNION of them.
Statement = SelectBase


def _identity(value: Any) -> Any:
    return value


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor | None = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor or _identity


def _bind_processor(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor or _identity


class Query:
    """A SELECT compiled once for one dialect: its SQL, how to bind its parameters and decode its columns."""

    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._binds = [
            (name, compiled.binds[name], _bind_processor(compiled.binds[name].type, dialect))
            for name in compiled.positiontup or ()
        ]
        self.stored_processors: Sequence[Processor] = [
            _result_processor(column.type, dialect) for column in statement.selected_columns
        ]

    def driver_parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters as the driver takes them (the statement's own literals included)."""
        return tuple(process(values.get(name, bind.effective_value)) for name, bind, process in self._binds)

    def plain_parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The parameters in the SQL's order, before any driver conversion: for statement hooks."""
        return tuple(values.get(name, bind.effective_value) for name, bind, _ in self._binds)


class _Busy(Exception):
    """SQLite could not serve the read at once; it is retried off the event loop."""


class Reads:
    """Runs `Query`s on this engine's read path (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._path = _sqlite_file(engine) if engine.url.get_backend_name() == "sqlite" else None
        self.on_loop = self._path is not None
        self._connection: sqlite3.Connection | None = None
        self._pg = _PgReads(engine) if engine.url.get_driver_name() == "asyncpg" else None
        self._decodes = self._path is not None or self._pg is not None
        self._queries: dict[Any, Query] = {}
        event.listen(engine.sync_engine, "engine_disposed", self._on_dispose)

    def query(self, statement: Statement) -> Query:
        """The statement compiled for this database, once per statement object."""
        query = self._queries.get(statement)
        if query is None:
            query = self._queries[statement] = Query(statement, self.dialect)
        return query

    def processors(self, query: Query) -> Sequence[Processor]:
        """How the values `raw` returns are decoded: driver values on the sqlite3 and asyncpg paths, else
        already done."""
        return query.stored_processors if self._decodes else [_identity] * len(query.stored_processors)

    async def raw(
        self, query: Query, values: Mapping[str, Any], hook: StatementHook | None = None
    ) -> list[Row]:
        """The rows, undecoded on the sqlite3 and asyncpg paths (see `processors`)."""
        if hook is not None:
            hook(query.sql, query.plain_parameters(values))
        if self._pg is not None:
            return await self._pg.fetch(query.sql, query.driver_parameters(values))
        if self._path is not None:
            parameters = query.driver_parameters(values)
            try:
                return self._fetch_on_loop(query.sql, parameters)
            except _Busy:
                # Rather than wait with the event loop blocked, the same statement goes through aiosqlite,
                # which waits for the busy timeout in its own thread.
                async with self.engine.connect() as connection:
                    result = await connection.exec_driver_sql(query.sql, parameters)
                    return [tuple(row) for row in result]
        async with self.engine.connect() as connection:
            result = await connection.execute(cast(Executable, query.statement), dict(values))
            return [tuple(row) for row in result]

    async def rows(
        self, query: Query, values: Mapping[str, Any], hook: StatementHook | None = None
    ) -> list[Row]:
        """The rows, decoded into Python values."""
        found = await self.raw(query, values, hook)
        if not self._decodes or not found:
            return found
        process = query.stored_processors
        return [tuple(decode(value) for decode, value in zip(process, row, strict=True)) for row in found]

    def _fetch_on_loop(self, sql: str, parameters: tuple[Any, ...]) -> list[Row]:
        try:
            if self._connection is None:
                self._connection = self._connect()
            # fetchall() runs the statement to its end, so no read transaction stays open after it.
            rows: list[Row] = self._connection.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Busy from exc
            self.close()
            raise OperationalError(sql, parameters, exc) from exc
        except sqlite3.Error as exc:
            self.close()
            raise OperationalError(sql, parameters, exc) from exc
        return rows

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        connection = sqlite3.connect(
            # timeout=0: never wait for a lock on the event loop (see raw).
            self._path,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
        connection.execute("PRAGMA query_only=ON")
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _on_dispose(self, _engine: Any) -> None:
        """The app's engine is being disposed (inside SQLAlchemy's greenlet): close ours with it."""
        self.close()
        if self._pg is not None:
            self._pg.dispose()


class _PgReads:
    """Reads on asyncpg connections of an AUTOCOMMIT pool of their own, past SQLAlchemy's execution.

    A read holds its connection for one short statement, so a few connections serve many requests (callers
    queue for one); this pool adds at most 10 to each web process's 20, all kept open (no overflow: a
    connection opened per checkout costs more than the wait). The connections are SQLAlchemy's (its
    codecs set up, closed with the app's engine), the statements asyncpg's own, prepared once per
    connection. No liveness ping per checkout (a round trip per read): a read on a connection the server
    dropped is sent again on another.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = create_async_engine(
            engine.url, isolation_level="AUTOCOMMIT", pool_size=10, max_overflow=0
        )

    async def fetch(self, sql: str, parameters: tuple[Any, ...]) -> list[Row]:
        failed: Exception | None = None
        # Every connection the pool holds may be dead (a server restart); then one fresh one is tried.
        for _ in range(self.engine.pool.size() + 2):  # type: ignore[attr-defined]
            pooled = await self.engine.raw_connection()
            driver: asyncpg.Connection = pooled.driver_connection
            if driver.is_closed():  # the server closed it while idle
                pooled.invalidate()
                continue
            try:
                found = await driver.fetch(sql, *parameters)
            except Exception as exc:
                if _is_query_error(exc) and not driver.is_closed():
                    pooled.close()  # the statement failed, the connection is fine
                    raise DBAPIError(sql, parameters, exc) from exc
                pooled.invalidate(exc)
                if failed is not None:
                    raise OperationalError(sql, parameters, exc) from exc
                failed = exc
                continue
            except BaseException:
                pooled.invalidate()  # cancelled mid-statement: what the connection still has to read is unknown
                raise
            pooled.close()
            return [tuple(row) for row in found]
        raise OperationalError(sql, parameters, failed or ConnectionError("no live connection"))

    def dispose(self) -> None:
        # Without an event loop to close them on, its connections simply go with the process.
        with contextlib.suppress(Exception):
            self.engine.sync_engine.dispose()


def _is_query_error(exc: Exception) -> bool:
    """The server refused the statement (not the connection: class 08 and the shutdowns of class 57)."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError
    )


# Kept on the engine itself, so that it lives exactly as long (a mapping keyed by engines would keep them).
_ATTRIBUTE = "_app_hot_reads"


def reads_for(engine: AsyncEngine) -> Reads:
    """The one `Reads` of this engine: its sqlite3 connection or asyncpg connections are shared by every
    reader."""
    reads: Reads | None = getattr(engine.sync_engine, _ATTRIBUTE, None)
    if reads is None:
        reads = Reads(engine)
        setattr(engine.sync_engine, _ATTRIBUTE, reads)
    return reads


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = engine.url
    if not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return url.database
