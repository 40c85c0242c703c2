"""Who is calling the Public Booking API: a key, looked up by its hash in one indexed query.

The lookup is the guard's one database operation, so it is kept lean (see docs/BENCHMARKS.md):

* SQLite: a read-only sqlite3 connection of its own, queried on the event loop. The SELECT on the unique
  key_hash index takes microseconds, less than a hop to aiosqlite's thread and back, and it runs in
  autocommit mode: no BEGIN and ROLLBACK around it, and every query sees the latest committed row. It never
  waits for a lock on the loop: when SQLite is busy, that lookup goes through the app's engine instead.
* Other databases (PostgreSQL): an AUTOCOMMIT engine on the same URL, so the lookup is its own statement
  with no BEGIN/ROLLBACK round trips (the pool's liveness ping stays, and is one round trip too).
* While statement listeners are attached to the app's engine (tracing, tests), the lookup runs on that
  engine instead, in a short transaction, so that they see it.

Rows are decoded by the columns' own SQLAlchemy types, once per distinct row. No key is cached: every
request reads its key's row, so a revocation is honoured by the very next request, in every process.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey


@dataclass(frozen=True, slots=True)
class ApiClient:
    """What a request may do, as its key says. Carried on the request for the handlers."""

    key_id: uuid.UUID
    organization_id: uuid.UUID
    scopes: frozenset[str]
    allowed_origins: frozenset[str]
    rate_limit_per_minute: int


class KeyRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


_LOOKUP = select(
    ApiKey.id,
    ApiKey.organization_id,
    ApiKey.scopes,
    ApiKey.allowed_origins,
    ApiKey.rate_limit_per_minute,
    ApiKey.expires_at,
    ApiKey.revoked_at,
).where(ApiKey.key_hash == bindparam("key_hash"))


class _Busy(Exception):
    """SQLite could not serve the read at once; the lookup is retried off the event loop."""


# Decoded key rows kept per process (a few hundred bytes each); beyond this many the memo starts over.
_MEMO_LIMIT = 16_384

KeyRow = tuple[Any, ...]
Processor = Callable[[Any], Any]


class KeyStore:
    """Finds a key's row by hash, and decodes it into an ApiClient. One per engine (see `for_engine`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._clients: dict[KeyRow, ApiClient] = {}
        self._events = engine.sync_engine.dispatch
        self._fast: _SqliteReader | _AutocommitReader = (
            _SqliteReader(engine) if _sqlite_file(engine) else _AutocommitReader(engine)
        )
        self._observable = _AppEngineReader(engine)

    @staticmethod
    def for_engine(engine: AsyncEngine) -> KeyStore:
        store: KeyStore | None = engine.sync_engine.__dict__.get("_api_key_store")
        if store is None:
            store = engine.sync_engine.__dict__["_api_key_store"] = KeyStore(engine)
        return store

    async def authenticate(self, key_hash: str, now: datetime | None = None) -> ApiClient:
        """The caller whose key has this hash (see `checked_hash`), or KeyRejected."""
        # Statement listeners on the app's engine (tracing, tests) see the lookup: it then goes through it.
        observed = self._events.before_cursor_execute or self._events.after_cursor_execute
        reader = self._observable if observed else self._fast
        try:
            row = await reader.fetch(key_hash)
        except _Busy:
            reader = self._observable
            row = await reader.fetch(key_hash)
        if row is None:
            raise KeyRejected("invalid_api_key", "The API key does not exist. It may have been deleted.")
        expires_at, revoked_at = row[5], row[6]
        process = reader.processors
        status = rules.key_status(
            revoked_at=None if revoked_at is None else process[6](revoked_at),
            expires_at=None if expires_at is None else process[5](expires_at),
            now=now or datetime.now(UTC),
        )
        if status == "revoked":
            raise KeyRejected("key_revoked", "The API key has been revoked.")
        if status == "expired":
            raise KeyRejected("key_expired", "The API key has expired.")
        return self._client(row, process)

    def _client(self, row: KeyRow, process: list[Processor]) -> ApiClient:
        """The row's caller, decoded once per distinct row: the same key's requests share one ApiClient.
        Not a cache of keys: every request reads the row, and a changed row is a different entry."""
        key_id, organization_id, scopes, origins, rate_limit = row[:5]
        if isinstance(scopes, str):  # stored JSON text, decoded below
            identity = row[:5]
        else:  # lists already decoded by SQLAlchemy
            identity = (key_id, organization_id, tuple(scopes), tuple(origins), rate_limit)
        client = self._clients.get(identity)
        if client is None:
            if len(self._clients) >= _MEMO_LIMIT:
                self._clients.clear()
            client = self._clients[identity] = ApiClient(
                key_id=process[0](key_id),
                organization_id=process[1](organization_id),
                scopes=frozenset(process[2](scopes)),
                allowed_origins=frozenset(process[3](origins)),
                rate_limit_per_minute=process[4](rate_limit),
            )
        return client


def checked_hash(key: str) -> str:
    """The hash a key is stored under; KeyRejected for junk and typos, which need no I/O to refuse."""
    if not rules.is_well_formed(key):
        raise KeyRejected(
            "invalid_api_key", "The API key is not a valid QuickVisit key. Check for a copy-paste error."
        )
    return rules.hash_key(key)


async def authenticate(engine: AsyncEngine, key_hash: str, now: datetime | None = None) -> ApiClient:
    """The caller whose key has this hash (see `checked_hash`), or KeyRejected."""
    return await KeyStore.for_engine(engine).authenticate(key_hash, now)


def _processor(type_: Any, dialect: Dialect) -> Processor:
    processor: Processor | None = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor or _identity


def _identity(value: Any) -> Any:
    return value


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return url.database


class _SqliteReader:
    """A read-only sqlite3 connection, used on the event loop; closed when the engine is disposed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._path = _sqlite_file(engine)
        self._sql = str(_LOOKUP.compile(dialect=engine.dialect))
        # The driver returns stored values (bytes, text): decode them as SQLAlchemy would.
        self.processors = [_processor(column.type, engine.dialect) for column in _LOOKUP.selected_columns]
        self._connection: sqlite3.Connection | None = None
        event.listen(engine.sync_engine, "engine_disposed", self._on_dispose)

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        connection = sqlite3.connect(
            # timeout=0: never wait for a lock on the event loop (see fetch).
            self._path,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
        connection.execute("PRAGMA query_only=ON")
        return connection

    async def fetch(self, key_hash: str) -> KeyRow | None:
        try:
            if self._connection is None:
                self._connection = self._connect()
            # fetchall() runs the statement to its end, so no read transaction stays open after it.
            rows: Sequence[KeyRow] = self._connection.execute(self._sql, (key_hash,)).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                # Rare in WAL mode (a checkpoint resetting the log, many readers at once): rather than
                # wait with the event loop blocked, the caller retries through aiosqlite, which waits
                # for the busy timeout in its own thread.
                raise _Busy from exc
            self.close()
            raise OperationalError(self._sql, (key_hash,), exc) from exc
        except sqlite3.Error as exc:
            self.close()
            raise OperationalError(self._sql, (key_hash,), exc) from exc
        return rows[0] if rows else None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _on_dispose(self, _engine: Any) -> None:
        self.close()


class _AppEngineReader:
    """The lookup on the app's own engine, in a transaction of its own: what statement listeners can see."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.processors: list[Processor] = [_identity] * len(_LOOKUP.selected_columns)  # SQLAlchemy decodes

    async def fetch(self, key_hash: str) -> KeyRow | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(_LOOKUP, {"key_hash": key_hash})).first()
        return None if row is None else tuple(row)


class _AutocommitReader:
    """Lookups on an AUTOCOMMIT engine of the same URL: one statement, no transaction around it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._url = engine.url
        self._engine: AsyncEngine | None = None
        self.processors: list[Processor] = [_identity] * len(_LOOKUP.selected_columns)  # SQLAlchemy decodes
        event.listen(engine.sync_engine, "engine_disposed", self._on_dispose)

    def _reader(self) -> AsyncEngine:
        if self._engine is None:
            # A lookup holds its connection for one short statement, so a few connections serve many
            # requests (callers queue for one); this pool adds at most 10 to each web process's 20, all
            # kept open (no overflow: a connection opened per checkout costs more than the wait).
            self._engine = create_async_engine(
                self._url, isolation_level="AUTOCOMMIT", pool_pre_ping=True, pool_size=10, max_overflow=0
            )
        return self._engine

    async def fetch(self, key_hash: str) -> KeyRow | None:
        async with self._reader().connect() as connection:
            row = (await connection.execute(_LOOKUP, {"key_hash": key_hash})).first()
        return None if row is None else tuple(row)

    def _on_dispose(self, _engine: Any) -> None:
        """The app's engine is being disposed (inside SQLAlchemy's greenlet): dispose ours with it."""
        reader, self._engine = self._engine, None
        if reader is not None:
            # Without an event loop to close them on, its connections simply go with the process.
            with contextlib.suppress(Exception):
                reader.sync_engine.dispose()
