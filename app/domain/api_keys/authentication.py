"""Who is calling the Public Booking API: a key, looked up by its hash in one indexed query.

The lookup is the guard's one database operation, so it is kept lean (see docs/BENCHMARKS.md). It runs on the
app's hot read path (`app/lib/reads.py`, chosen once per database: a read-only sqlite3 connection on the
event loop, or asyncpg on an AUTOCOMMIT pool), and brings with the key what every request needs: its organization's
time zone and catalog version (the stamp the per-process catalog cache is checked against).

Whoever wants to see the lookups (tests, tracing) sets `on_statement`: it is called with the SQL of every
lookup, on whichever path runs it, so what they see is what production runs.

Rows are decoded by the columns' own SQLAlchemy types, once per distinct row. No key is cached: every
request reads its key's row, so a revocation is honoured by the very next request, in every process.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.accounts.models import Organization
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.errors import KeyRejected
from app.lib.clock import Clock, system_clock
from app.lib.reads import Processor, StatementHook, reads_for


@dataclass(frozen=True, slots=True)
class ApiClient:
    """What a request may do, as its key says. Carried on the request for the handlers."""

    key_id: uuid.UUID
    organization_id: uuid.UUID
    scopes: frozenset[str]
    allowed_origins: frozenset[str]
    rate_limit_per_minute: int
    time_zone: str
    """The organization's IANA time zone."""
    catalog_version: int
    """The organization's catalog version as this request read it: what its catalog cache must match."""
    # Set when the request came with the key's previous secret (rolled, in its grace): when it stops working.
    previous_secret_expires_at: datetime | None = None


# A key is found by its current or its previous secret: each hash column has its own unique index, and the
# OR of the two is still one indexed lookup (SQLite's multi-index OR, PostgreSQL's BitmapOr); its
# organization comes by primary key in the same statement.
_LOOKUP = (
    select(
        ApiKey.id,
        ApiKey.organization_id,
        ApiKey.scopes,
        ApiKey.allowed_origins,
        ApiKey.rate_limit_per_minute,
        ApiKey.expires_at,
        ApiKey.revoked_at,
        ApiKey.previous_key_hash,
        ApiKey.previous_expires_at,
        Organization.time_zone,
        Organization.catalog_version,
    )
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where((ApiKey.key_hash == bindparam("key_hash")) | (ApiKey.previous_key_hash == bindparam("key_hash")))
)
# The previous secret's columns (hash, end of its grace) and the organization's (time zone, catalog version).
_PREVIOUS_HASH, _PREVIOUS_EXPIRES = 7, 8
_TIME_ZONE, _CATALOG_VERSION = 9, 10
_ORGANIZATION = slice(_TIME_ZONE, _CATALOG_VERSION + 1)


# Decoded key rows kept per process (a few hundred bytes each); beyond this many the memo starts over.
_MEMO_LIMIT = 16_384

KeyRow = tuple[Any, ...]


class KeyStore:
    """Finds a key's row by hash, and decodes it into an ApiClient; one per app engine.

    `on_statement` may be set at any time (tests set it for the length of a check).
    """

    def __init__(
        self, engine: AsyncEngine, clock: Clock = system_clock, on_statement: StatementHook | None = None
    ) -> None:
        self._clients: dict[KeyRow, ApiClient] = {}
        self._reads = reads_for(engine)
        self._query = self._reads.query(_LOOKUP)
        self._clock = clock
        self.on_statement = on_statement

    async def authenticate(self, key_hash: str) -> ApiClient:
        """The caller whose key has this hash (see `checked_hash`), or KeyRejected."""
        rows = await self._reads.raw(self._query, {"key_hash": key_hash}, self.on_statement)
        row = rows[0] if rows else None
        if row is None:
            raise KeyRejected("invalid_api_key", "The API key does not exist. It may have been deleted.")
        expires_at, revoked_at = row[5], row[6]
        process = self._reads.processors(self._query)
        if revoked_at is not None or expires_at is not None:  # most keys never expire: no clock read
            status = rules.key_status(
                revoked_at=None if revoked_at is None else process[6](revoked_at),
                expires_at=None if expires_at is None else process[5](expires_at),
                now=self._clock(),
            )
            if status == "revoked":
                raise KeyRejected("key_revoked", "The API key has been revoked.", process[0](row[0]))
            if status == "expired":
                raise KeyRejected("key_expired", "The API key has expired.", process[0](row[0]))
        client = self._client(row, process)
        if row[_PREVIOUS_HASH] != key_hash:  # the current secret
            return client
        previous_ends = row[_PREVIOUS_EXPIRES]
        ends = None if previous_ends is None else process[_PREVIOUS_EXPIRES](previous_ends)
        if ends is None or ends <= self._clock():
            detail = (
                "This API key was rolled: the secret sent was replaced by a new one and no longer works. "
                "Use the key's new secret."
            )
            raise KeyRejected("key_expired", detail, client.key_id)
        return dataclasses.replace(client, previous_secret_expires_at=ends)

    def _client(self, row: KeyRow, process: Sequence[Processor]) -> ApiClient:
        """The row's caller, decoded once per distinct row: the same key's requests share one ApiClient.
        Not a cache of keys: every request reads the row, and a changed row is a different entry."""
        key_id, organization_id, scopes, origins, rate_limit = row[:5]
        time_zone, catalog_version = row[_ORGANIZATION]
        if isinstance(scopes, str):  # stored JSON text, decoded below
            identity = (*row[:5], time_zone, catalog_version)
        else:  # lists already decoded by SQLAlchemy
            identity = (
                key_id,
                organization_id,
                tuple(scopes),
                tuple(origins),
                rate_limit,
                time_zone,
                catalog_version,
            )
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
                time_zone=process[_TIME_ZONE](time_zone),
                catalog_version=process[_CATALOG_VERSION](catalog_version),
            )
        return client


@dataclass(frozen=True, slots=True)
class KeyView:
    """The calling key as `GET /api/v1/key` shows it."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    allowed_origins: list[str]
    rate_limit_per_minute: int
    expires_at: datetime | None


_KEY = select(
    ApiKey.id,
    ApiKey.name,
    ApiKey.prefix,
    ApiKey.scopes,
    ApiKey.allowed_origins,
    ApiKey.rate_limit_per_minute,
    ApiKey.expires_at,
).where(ApiKey.id == bindparam("key_id"))


async def key_view(engine: AsyncEngine, key_id: uuid.UUID) -> KeyView:
    """The key's row by primary key, on the hot read path; KeyRejected if it was deleted since its lookup."""
    reads = reads_for(engine)
    rows = await reads.rows(reads.query(_KEY), {"key_id": key_id})
    if not rows:
        raise KeyRejected("invalid_api_key", "The API key does not exist. It may have been deleted.")
    return KeyView(*rows[0])


def checked_hash(key: str) -> str:
    """The hash a key is stored under; KeyRejected for junk and typos, which need no I/O to refuse."""
    if not rules.is_well_formed(key):
        raise KeyRejected(
            "invalid_api_key", "The API key is not a valid QuickVisit key. Check for a copy-paste error."
        )
    return rules.hash_key(key)


async def live_client(store: KeyStore, key: str) -> ApiClient | None:
    """Whom the guard would serve `key` as right now, by its own lookup; None for junk and for unknown,
    revoked and expired keys."""
    try:
        return await store.authenticate(checked_hash(key))
    except KeyRejected:
        return None
