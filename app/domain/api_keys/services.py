"""Issuing, listing, revoking and deleting API keys."""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.api_keys import leaks, rules
from app.domain.api_keys.authentication import KeyStore, live_client
from app.domain.api_keys.models import ApiKey, LeakedKeyAlert
from app.domain.audit.services import Actor, AuditLogService
from app.domain.webhooks import outbox

# Who revokes a key that a secret-scanning report found in public, in the audit log.
LEAK_REPORTER_LABEL = "GitHub secret scanning"


def _label(api_key: ApiKey) -> str:
    return f"{api_key.name} ({api_key.prefix}...)"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _settings(api_key: ApiKey) -> dict[str, Any]:
    """What an edit may change, as the audit log records it."""
    return {
        "name": api_key.name,
        "scopes": list(api_key.scopes),
        "allowed_origins": list(api_key.allowed_origins),
        "rate_limit_per_minute": api_key.rate_limit_per_minute,
        "expires_at": _iso(api_key.expires_at),
    }


class KeyLookupError(LookupError):
    """An id or prefix names no key, or more than one."""


class KeyNotRollable(ValueError):
    """A revoked or expired key: a new secret would not work, so none is issued."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly issued key: `secret` exists only here, for the creation response."""

    api_key: ApiKey
    secret: str
    # Rolling: the prefix of an older previous secret that was still working and has just been ended.
    ended_previous_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class TokenFeedback:
    """What GitHub is told about one reported token: never whose key it was."""

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]


@dataclass(frozen=True, slots=True)
class RefusedCalls:
    """Requests refused because the key is revoked or expired: how many, and the last one (to the minute)."""

    count: int
    last_at: datetime | None


class KeyUsage(abc.ABC):
    """What the API Keys pages read from the keys' usage. The usage context implements it (app.asgi wires it in):
    usage reads api_keys, so api_keys cannot import it. A class, not a Protocol: Litestar checks a
    dependency against its annotation."""

    @abc.abstractmethod
    async def refused_since(self, session: AsyncSession, key_id: uuid.UUID, since: datetime) -> RefusedCalls:
        """Requests refused since `since` because the key was revoked or expired."""

    @abc.abstractmethod
    async def requests_last_7_days(
        self, session: AsyncSession, organization_id: uuid.UUID, time_zone: str, now: datetime
    ) -> dict[uuid.UUID, int]:
        """Requests per key of an organization over its last 7 local days (the table's Requests column), in
        one query whatever the number of keys; keys without requests are absent."""


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
        now: datetime,
        time_zone: str = "UTC",
    ) -> IssuedKey:
        """A new key; a custom expiry date ends at midnight in `time_zone` (the organization's)."""
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
                expires_at=rules.requested_expiry(request, now, time_zone),
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

    async def edit(
        self,
        api_key: ApiKey,
        request: rules.KeyRequest,
        *,
        actor: Actor,
        now: datetime,
        time_zone: str = "UTC",
    ) -> ApiKey:
        """Change a key's settings in place; one audit entry with each changed field before and after, none
        when nothing changed. The guard reads the row on every request, so the next request sees it."""
        before = _settings(api_key)
        api_key.name = request.name
        api_key.scopes = list(request.scopes)
        api_key.allowed_origins = list(request.allowed_origins)
        api_key.rate_limit_per_minute = request.rate_limit_per_minute
        if not request.keep_expiry:
            api_key.expires_at = rules.requested_expiry(request, now, time_zone)
        after = _settings(api_key)
        changes = {
            field: {"before": before[field], "after": after[field]}
            for field in before
            if before[field] != after[field]
        }
        if not changes:
            return api_key
        api_key = await self.update(api_key)
        await self._audit().record(
            api_key.organization_id,
            actor,
            "api_key.updated",
            api_key.id,
            _label(api_key),
            {"changes": changes},
        )
        return api_key

    async def roll(self, api_key: ApiKey, grace: timedelta, *, actor: Actor, now: datetime) -> IssuedKey:
        """A new secret for the same key; the current one keeps working for `grace` (never past the key's
        expiry), and a previous secret still in its grace ends at once (at most one is kept)."""
        if api_key.revoked_at is not None:
            raise KeyNotRollable("A revoked key cannot be rolled: create a new key instead.")
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise KeyNotRollable(
                "An expired key cannot be rolled: change its expiry first, or create a new key."
            )
        ended = (
            api_key.previous_prefix
            if api_key.previous_expires_at is not None and api_key.previous_expires_at > now
            else None
        )
        secret = rules.generate_key()
        previous_prefix = api_key.prefix
        api_key.previous_key_hash = api_key.key_hash
        api_key.previous_prefix = previous_prefix
        api_key.previous_expires_at = rules.previous_secret_ends_at(now, grace, api_key.expires_at)
        api_key.key_hash = rules.hash_key(secret)
        api_key.prefix = rules.display_prefix(secret)
        api_key = await self.update(api_key)
        details = {
            "prefix": api_key.prefix,
            "previous_prefix": previous_prefix,
            "previous_expires_at": _iso(api_key.previous_expires_at),
            "ended_previous_prefix": ended,
        }
        await self._audit().record(
            api_key.organization_id, actor, "api_key.rolled", api_key.id, _label(api_key), details
        )
        return IssuedKey(api_key=api_key, secret=secret, ended_previous_prefix=ended)

    async def revoke(self, api_key: ApiKey, *, actor: Actor, now: datetime) -> ApiKey:
        """Revoke once; revoking again keeps the first revocation time and records nothing (of two revocations
        racing on one key, as of two reports, exactly one writes)."""
        if api_key.revoked_at is not None:
            return api_key
        revoked = await self._revoke_if_active(api_key.id, now)
        # As stored now: this revocation, or the one that came first.
        api_key = await self.get(api_key.id)
        await self.repository.session.refresh(api_key)
        if not revoked:
            return api_key
        await self._audit().record(
            api_key.organization_id, actor, "api_key.revoked", api_key.id, _label(api_key)
        )
        await _key_event(self, "api_key.revoked", api_key, now)
        return api_key

    async def _revoke_if_active(self, key_id: uuid.UUID, now: datetime) -> bool:
        """One conditional UPDATE: True when this call revoked the key, False when it was revoked already."""
        result = cast(
            "CursorResult[tuple[()]]",
            await self.repository.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ),
        )
        return result.rowcount == 1

    async def revoke_found_in_public(
        self, key_id: uuid.UUID, *, url: str, now: datetime, reporter_address: str | None = None
    ) -> ApiKey | None:
        """Revoke a key reported as found in public at `url`, with its audit entry and an alert for the
        organization's admins. None when it was revoked already (by anyone, a concurrent report included):
        then nothing is written."""
        if not await self._revoke_if_active(key_id, now):
            return None
        api_key = await self.get(key_id)
        await self.repository.session.refresh(api_key)
        details = {"reason": leaks.revocation_reason(url), "url": url}
        await self._audit().record(
            api_key.organization_id,
            Actor(label=LEAK_REPORTER_LABEL, ip_address=reporter_address),
            "api_key.revoked",
            api_key.id,
            _label(api_key),
            details,
        )
        await LeakedKeyAlertService(session=self.repository.session).create(
            LeakedKeyAlert(
                organization_id=api_key.organization_id,
                api_key_id=api_key.id,
                key_label=_label(api_key),
                url=url,
            )
        )
        await _key_event(self, "api_key.revoked", api_key, now, {"reason": "found_in_public"})
        await _key_event(self, "api_key.leaked", api_key, now, {"url": url})
        return api_key

    async def handle_leak_report(
        self,
        store: KeyStore,
        tokens: Sequence[leaks.ReportedToken],
        *,
        now: datetime,
        reporter_address: str | None = None,
    ) -> list[TokenFeedback]:
        """Revoke every live key in a secret-scanning report; one feedback entry per reported token.

        A token is live when it has our format and checksum and the guard's own lookup (`live_client`, by
        hash) accepts it, so whatever the guard would serve is what gets revoked. Everything else (junk,
        unknown, revoked or expired keys) is a false positive and changes nothing.
        """
        revoked: dict[str, bool] = {}  # by hash: a token listed twice is revoked once, labelled alike
        feedback = []
        for reported in tokens:
            key_hash = rules.hash_key(reported.token)
            if key_hash not in revoked:
                revoked[key_hash] = False
                client = await live_client(store, reported.token)
                if client is not None:
                    found = await self.revoke_found_in_public(
                        client.key_id, url=reported.url, now=now, reporter_address=reporter_address
                    )
                    revoked[key_hash] = found is not None
            label: Literal["true_positive", "false_positive"] = (
                "true_positive" if revoked[key_hash] else "false_positive"
            )
            feedback.append(TokenFeedback(token_hash=key_hash, token_type=reported.type, label=label))
        return feedback

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
            # The current prefix; a rolled key is also found by its previous one.
            matches = await self.get_many(ApiKey.prefix == text)
            if not matches:
                matches = await self.get_many(ApiKey.previous_prefix == text)
        else:
            matches = await self.get_many(ApiKey.id == key_id)
        if not matches:
            raise KeyLookupError(f"No API key with id or prefix {text!r}.")
        if len(matches) > 1:
            raise KeyLookupError(f"Prefix {text!r} matches {len(matches)} keys; use the key id instead.")
        return matches[0]


class LeakedKeyAlertService(SQLAlchemyAsyncRepositoryService[LeakedKeyAlert]):
    """The banners about keys revoked because they were found in public."""

    class Repo(SQLAlchemyAsyncRepository[LeakedKeyAlert]):
        model_type = LeakedKeyAlert

    repository_type = Repo

    async def open_for_organization(
        self, organization_id: uuid.UUID, key_id: uuid.UUID | None = None
    ) -> Sequence[LeakedKeyAlert]:
        """Alerts no admin has dismissed yet, newest first; only those about one key when `key_id` is given."""
        filters = [LeakedKeyAlert.organization_id == organization_id, LeakedKeyAlert.dismissed_at.is_(None)]
        if key_id is not None:
            filters.append(LeakedKeyAlert.api_key_id == key_id)
        return await self.get_many(
            *filters, order_by=[LeakedKeyAlert.created_at.desc(), LeakedKeyAlert.id.desc()]
        )

    async def dismiss(
        self,
        organization_id: uuid.UUID,
        alert_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        now: datetime,
    ) -> LeakedKeyAlert:
        """Dismiss for every admin of the organization; again is harmless. Another organization's: not found."""
        alert = await self.get_one_or_none(
            LeakedKeyAlert.id == alert_id, LeakedKeyAlert.organization_id == organization_id
        )
        if alert is None:
            raise NotFoundError("No such alert.")
        if alert.dismissed_at is None:
            alert.dismissed_at = now
            alert.dismissed_by_id = user_id
            alert = await self.update(alert)
        return alert


async def _key_event(
    service: ApiKeyService,
    event_type: str,
    api_key: ApiKey,
    now: datetime,
    extra: dict[str, str] | None = None,
) -> None:
    """The key's webhook event, in the transaction that revokes it."""
    data = {"id": str(api_key.id), "name": api_key.name, "prefix": api_key.prefix, **(extra or {})}
    await outbox.record(service.repository.session, api_key.organization_id, event_type, data, now)
