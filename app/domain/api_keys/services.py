"""Issuing, listing, revoking and deleting API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.audit.services import Actor, AuditLogService


def _label(api_key: ApiKey) -> str:
    return f"{api_key.name} ({api_key.prefix}...)"


class KeyLookupError(LookupError):
    """An id or prefix names no key, or more than one."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly issued key: `secret` exists only here, for the creation response."""

    api_key: ApiKey
    secret: str


class ApiKeyService(SQLAlchemyAsyncRepositoryService[ApiKey]):
    class Repo(SQLAlchemyAsyncRepository[ApiKey]):
        model_type = ApiKey

    repository_type = Repo

    async def list_for_organization(self, organization_id: uuid.UUID) -> Sequence[ApiKey]:
        return await self.get_many(
            ApiKey.organization_id == organization_id,
            order_by=[ApiKey.created_at.desc(), ApiKey.id.desc()],
        )

    async def get_for_organization(self, organization_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
        """The key, if it belongs to this organization; another organization's key is simply not found."""
        api_key = await self.get_one_or_none(ApiKey.id == key_id, ApiKey.organization_id == organization_id)
        if api_key is None:
            raise NotFoundError("No such API key.")
        return api_key

    def _audit(self) -> AuditLogService:
        # The entry is written in the same transaction as the change it records.
        return AuditLogService(session=self.repository.session)

    async def issue(
        self,
        organization_id: uuid.UUID,
        request: rules.KeyRequest,
        *,
        actor: Actor,
        now: datetime | None = None,
    ) -> IssuedKey:
        now = now or datetime.now(UTC)
        secret = rules.generate_key()
        api_key = await self.create(
            ApiKey(
                organization_id=organization_id,
                name=request.name,
                key_hash=rules.hash_key(secret),
                prefix=rules.display_prefix(secret),
                scopes=list(request.scopes),
                allowed_origins=list(request.allowed_origins),
                rate_limit_per_minute=request.rate_limit_per_minute,
                expires_at=rules.expires_at_for(request.expires_in_days, now),
                created_by_id=actor.user_id,
            ),
            auto_refresh=True,
        )
        details = {
            "scopes": list(request.scopes),
            "allowed_origins": list(request.allowed_origins),
            "rate_limit_per_minute": request.rate_limit_per_minute,
            "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
        }
        await self._audit().record(
            organization_id, actor, "api_key.created", api_key.id, _label(api_key), details
        )
        return IssuedKey(api_key=api_key, secret=secret)

    async def revoke(self, api_key: ApiKey, *, actor: Actor, now: datetime | None = None) -> ApiKey:
        """Revoke once; revoking again keeps the first revocation time and records nothing."""
        if api_key.revoked_at is None:
            api_key.revoked_at = now or datetime.now(UTC)
            api_key = await self.update(api_key)
            await self._audit().record(
                api_key.organization_id, actor, "api_key.revoked", api_key.id, _label(api_key)
            )
        return api_key

    async def remove(self, api_key: ApiKey, *, actor: Actor) -> None:
        """Delete the key and, through the foreign key, its usage logs; the audit entry stays."""
        await self._audit().record(
            api_key.organization_id, actor, "api_key.deleted", api_key.id, _label(api_key)
        )
        await self.delete(api_key.id)

    async def find_by_id_or_prefix(self, text: str) -> ApiKey:
        """For the CLI: a key by its id, or by its display prefix (with or without the trailing '...')."""
        text = text.strip().removesuffix("...")
        try:
            key_id = uuid.UUID(text)
        except ValueError:
            matches = await self.get_many(ApiKey.prefix == text)
        else:
            matches = await self.get_many(ApiKey.id == key_id)
        if not matches:
            raise KeyLookupError(f"No API key with id or prefix {text!r}.")
        if len(matches) > 1:
            raise KeyLookupError(f"Prefix {text!r} matches {len(matches)} keys; use the key id instead.")
        return matches[0]
