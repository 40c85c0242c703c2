"""Who is calling the Public Booking API: a key, looked up by its hash in one indexed query."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

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


async def authenticate(engine: AsyncEngine, key: str, now: datetime | None = None) -> ApiClient:
    """The caller for this key, or KeyRejected. Junk and typos are rejected before any I/O."""
    if not rules.is_well_formed(key):
        raise KeyRejected(
            "invalid_api_key", "The API key is not a valid QuickVisit key. Check for a copy-paste error."
        )
    # No cache: a revocation must be honoured by the very next request, in every process.
    async with engine.connect() as connection:
        row = (await connection.execute(_LOOKUP, {"key_hash": rules.hash_key(key)})).first()
    if row is None:
        raise KeyRejected("invalid_api_key", "The API key does not exist. It may have been deleted.")
    status = rules.key_status(
        revoked_at=row.revoked_at, expires_at=row.expires_at, now=now or datetime.now(UTC)
    )
    if status == "revoked":
        raise KeyRejected("key_revoked", "The API key has been revoked.")
    if status == "expired":
        raise KeyRejected("key_expired", "The API key has expired.")
    return ApiClient(
        key_id=row.id,
        organization_id=row.organization_id,
        scopes=frozenset(row.scopes),
        allowed_origins=frozenset(row.allowed_origins),
        rate_limit_per_minute=row.rate_limit_per_minute,
    )
