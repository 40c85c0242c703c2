"""The booking's write path: one short write transaction on the database's own driver, no ORM, no session.

One `Writes` per app engine (`writes_for(engine)`), its path chosen once by the database it writes:

* SQLite file: a read-write sqlite3 connection of the process, the whole transaction run on the event loop
  (each statement takes microseconds, less than one hop to aiosqlite's thread and back). It runs inside the
  process's writer lock (`lib/db.py::write_lock`), so this process's write transactions take turns; between
  BEGIN IMMEDIATE and COMMIT nothing awaits, so no other task runs on the loop meanwhile. The busy timeout is 0:
  when another process holds the write lock (the worker's fold, the CLI, a second web process) BEGIN is retried
  with a short asynchronous backoff, never blocking the loop, for up to `SQLITE_BUSY_TIMEOUT_MS`, and then fails
  with "database is locked" as aiosqlite's connections would. Its commits do not copy the write-ahead log
  back into the database (an automatic checkpoint, with a sync of the file, would stall the loop): every
  `_CHECKPOINT_EVERY` commits a thread does it, waiting for no one.
* PostgreSQL on asyncpg: the statements as asyncpg calls on one connection of the app's engine pool, in one
  transaction that waits for row locks at most `SQLITE_BUSY_TIMEOUT_MS` (`SET LOCAL lock_timeout`, sent with
  BEGIN in one round trip). Errors come out as SQLAlchemy's (`IntegrityError` for a constraint, else
  `OperationalError`), as from the engine.
* Any other database (an in-memory SQLite one): the same statements on a connection of the app's engine
  (`writer_engine`, inside `write_lock`).

Statements are SQLAlchemy Core constructs compiled once per dialect: SELECTs as the read path's `Query`,
INSERT/UPDATE/DELETE as `Query`s of no columns (`Writes.command`). Rows come back decoded by the columns'
own types. `on_statement` (settable at any time; tests count with it) sees every statement, BEGIN and COMMIT
or ROLLBACK included, with its SQL and parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import UpdateBase

from app.lib.db import SQLITE_BUSY_TIMEOUT_MS, write_lock, writer_engine
from app.lib.reads import Query, Row, Statement, StatementHook, _sqlite_file

# The first retry of a busy BEGIN after 1 ms, then doubling up to 20 ms: a fold's transaction lasts a few ms.
_FIRST_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.02
# Commits on the sqlite3 connection between two checkpoints (each commit adds a few pages to the log).
_CHECKPOINT_EVERY = 200


class _NoColumns:
    """An INSERT, UPDATE or DELETE as `Query` compiles it: the same binds, no result columns."""

    selected_columns: Sequence[Any] = ()

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement

    def compile(self, **kwargs: Any) -> Any:
        return self.statement.compile(**kwargs)


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Transaction:
    """One write transaction of the write path: statements are compiled on first use, once per dialect."""

    def __init__(self, writes: Writes) -> None:
        self._writes = writes
        self.dialect_name: str = writes.dialect.name

    async def rows(self, statement: Statement, values: Mapping[str, Any]) -> list[Row]:
        """The rows of a SELECT, decoded into Python values."""
        query = self._writes.query(statement)
        found = await self._fetch(query.sql, self._parameters(query, values))
        process = query.stored_processors
        return [tuple(decode(value) for decode, value in zip(process, row, strict=True)) for row in found]

    async def execute(self, statement: UpdateBase, values: Mapping[str, Any]) -> None:
        """Run an INSERT, UPDATE or DELETE."""
        query = self._writes.command(statement)
        await self._run(query.sql, self._parameters(query, values))

    def _parameters(self, query: Query, values: Mapping[str, Any]) -> tuple[Any, ...]:
        hook = self._writes.on_statement
        if hook is not None:
            hook(query.sql, query.plain_parameters(values))
        return query.driver_parameters(values)

    async def _fetch(self, sql: str, parameters: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    async def _run(self, sql: str, parameters: tuple[Any, ...]) -> None:
        raise NotImplementedError


class _SqliteTransaction(Transaction):
    def __init__(self, writes: Writes, connection: sqlite3.Connection) -> None:
        super().__init__(writes)
        self._connection = connection

    def _cursor(self, sql: str, parameters: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._connection.execute(sql, parameters)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(sql, parameters, exc) from exc
        except sqlite3.Error as exc:
            raise OperationalError(sql, parameters, exc) from exc

    # Nothing here awaits: the statement runs to its end on the loop, in microseconds.
    async def _fetch(self, sql: str, parameters: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        return self._cursor(sql, parameters).fetchall()

    async def _run(self, sql: str, parameters: tuple[Any, ...]) -> None:
        self._cursor(sql, parameters)


class _AsyncpgTransaction(Transaction):
    def __init__(self, writes: Writes, connection: Any) -> None:
        super().__init__(writes)
        self._connection = connection

    async def _fetch(self, sql: str, parameters: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        with _asyncpg_errors(sql, parameters):
            found: Sequence[Sequence[Any]] = await self._connection.fetch(sql, *parameters)
        return found

    async def _run(self, sql: str, parameters: tuple[Any, ...]) -> None:
        with _asyncpg_errors(sql, parameters):
            await self._connection.execute(sql, *parameters)


class _EngineTransaction(Transaction):
    def __init__(self, writes: Writes, connection: AsyncConnection) -> None:
        super().__init__(writes)
        self._connection = connection

    async def _fetch(self, sql: str, parameters: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        return (await self._connection.exec_driver_sql(sql, parameters)).all()

    async def _run(self, sql: str, parameters: tuple[Any, ...]) -> None:
        await self._connection.exec_driver_sql(sql, parameters)


@contextlib.contextmanager
def _asyncpg_errors(sql: str, parameters: Any) -> Iterator[None]:
    """asyncpg's errors as the engine would raise them: the API answers them as it answers the engine's."""
    import asyncpg

    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, parameters, exc) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise OperationalError(sql, parameters, exc) from exc


class Writes:
    """Runs write transactions on this engine's write path (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, on_statement: StatementHook | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.on_statement = on_statement
        url = engine.url
        self._path = _sqlite_file(engine) if url.get_backend_name() == "sqlite" else None
        self._asyncpg = url.get_backend_name() == "postgresql" and engine.dialect.driver == "asyncpg"
        self._connection: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._queries: dict[Any, Query] = {}
        event.listen(engine.sync_engine, "engine_disposed", self._on_dispose)

    def query(self, statement: Statement) -> Query:
        """A SELECT compiled for this database, once per statement object."""
        query = self._queries.get(statement)
        if query is None:
            query = self._queries[statement] = Query(statement, self.dialect)
        return query

    def command(self, statement: UpdateBase) -> Query:
        """An INSERT, UPDATE or DELETE compiled for this database, once per statement object."""
        query = self._queries.get(statement)
        if query is None:
            query = self._queries[statement] = Query(cast(Statement, _NoColumns(statement)), self.dialect)
        return query

    def _announce(self, sql: str) -> None:
        if self.on_statement is not None:
            self.on_statement(sql, ())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._path is not None:
            async with write_lock(self.engine), self._sqlite() as sqlite_transaction:
                yield sqlite_transaction
        elif self._asyncpg:
            async with self._postgres() as postgres_transaction:
                yield postgres_transaction
        else:
            async with write_lock(self.engine), writer_engine(self.engine).begin() as connection:
                self._announce("BEGIN")
                yield _EngineTransaction(self, connection)
                self._announce("COMMIT")

    @contextlib.asynccontextmanager
    async def _sqlite(self) -> AsyncIterator[Transaction]:
        connection = await self._begin_immediate()
        try:
            yield _SqliteTransaction(self, connection)
        except BaseException:
            self._announce("ROLLBACK")
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()
            raise
        self._announce("COMMIT")
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            self.close()  # its transaction, if any is left, goes with it
            raise OperationalError("COMMIT", (), exc) from exc
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.get_running_loop().run_in_executor(None, self._copy_back)

    def _copy_back(self) -> None:
        """Copy the write-ahead log back into the database (PASSIVE: waits for no one), in a thread."""
        assert self._path is not None
        # Busy or failed: the next one will do it.
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(self._path, timeout=0, isolation_level=None)) as connection,
        ):
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _begin_immediate(self) -> sqlite3.Connection:
        """The connection, in a transaction holding SQLite's write lock: waited for off the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
        backoff = _FIRST_BACKOFF_S
        self._announce("BEGIN IMMEDIATE")
        while True:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                self._connection.execute("BEGIN IMMEDIATE")
                return self._connection
            except sqlite3.Error as exc:
                if not _busy(exc):
                    self.close()
                    raise OperationalError("BEGIN IMMEDIATE", (), exc) from exc
                if loop.time() + backoff > deadline:
                    raise OperationalError("BEGIN IMMEDIATE", (), exc) from exc
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        # timeout=0: never wait for a lock on the event loop (see _begin_immediate). The app engine's pragmas.
        connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            # Without automatic checkpoints: one at a commit would copy the log back and sync the database
            # file on the event loop, milliseconds every ~100 bookings; `_copy_back` does it in a thread.
            pragmas = ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "wal_autocheckpoint=0")
            for pragma in pragmas:
                connection.execute(f"PRAGMA {pragma}")
        except BaseException:
            connection.close()
            raise
        return connection

    @contextlib.asynccontextmanager
    async def _postgres(self) -> AsyncIterator[Transaction]:
        async with self.engine.connect() as pooled:
            raw = await pooled.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            begin = f"BEGIN; SET LOCAL lock_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
            self._announce(begin)
            with _asyncpg_errors(begin, ()):
                await driver.execute(begin)
            try:
                yield _AsyncpgTransaction(self, driver)
            except BaseException:
                self._announce("ROLLBACK")
                try:
                    await driver.execute("ROLLBACK")
                except BaseException:
                    # A connection that cannot roll back must not go back to the pool mid-transaction.
                    await pooled.invalidate()
                raise
            self._announce("COMMIT")
            try:
                with _asyncpg_errors("COMMIT", ()):
                    await driver.execute("COMMIT")
            except BaseException:
                await pooled.invalidate()
                raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _on_dispose(self, _engine: Any) -> None:
        self.close()


# Kept on the engine itself, so that it lives exactly as long (a mapping keyed by engines would keep them).
_ATTRIBUTE = "_app_writes"


def writes_for(engine: AsyncEngine) -> Writes:
    """The one `Writes` of this engine: its sqlite3 connection is shared by every writer of the process."""
    writes: Writes | None = getattr(engine.sync_engine, _ATTRIBUTE, None)
    if writes is None:
        writes = Writes(engine)
        setattr(engine.sync_engine, _ATTRIBUTE, writes)
    return writes
