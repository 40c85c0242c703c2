"""Managing an organization's webhook endpoints (the staff page and the CLI) and reading their delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from advanced_alchemy.exceptions import NotFoundError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.audit.services import Actor, AuditLogService
from app.domain.errors import FieldError, InvalidFields
from app.domain.webhooks import outbox, rules
from app.domain.webhooks.delivery import Resolve, resolve
from app.domain.webhooks.models import WebhookAttempt, WebhookEndpoint


@dataclass(frozen=True, slots=True)
class WithSecret:
    """An endpoint with its signing secret: only in the answer that creates or rolls it."""

    endpoint: WebhookEndpoint
    secret: str


async def check_url(url: str, *, production: bool, resolver: Resolve = resolve) -> str | None:
    """What is wrong with `url` as an endpoint, or None; in production its addresses are checked too."""
    if problem := rules.url_problem(url, production=production):
        return problem
    if production:
        parts = urlsplit(url)
        assert parts.hostname is not None
        try:
            addresses = await resolver(parts.hostname, parts.port or 443)
        except OSError:
            return f"{parts.hostname} does not resolve."
        if not addresses or rules.refused_addresses(addresses):
            return (
                f"{parts.hostname} resolves to a private, loopback or link-local address: use a public one."
            )
    return None


async def add(
    session: AsyncSession,
    organization_id: uuid.UUID,
    url: str,
    events: Sequence[str],
    *,
    secret_key: str,
    production: bool,
    actor: Actor,
    resolver: Resolve = resolve,
) -> WithSecret:
    url = url.strip()
    errors = []
    if problem := await check_url(url, production=production, resolver=resolver):
        errors.append(FieldError("/url", problem))
    unknown = [name for name in events if name not in rules.EVENT_TYPES]
    if unknown or not events:
        errors.append(FieldError("/events", f"Choose one or more of: {', '.join(rules.EVENT_TYPES)}."))
    if errors:
        raise InvalidFields(errors)
    endpoint = WebhookEndpoint(
        organization_id=organization_id,
        url=url,
        events=[name for name in rules.EVENT_TYPES if name in events],
        enabled=True,
        secret_salt=rules.new_salt(),
    )
    session.add(endpoint)
    await session.flush()
    await AuditLogService(session=session).record(
        organization_id, actor, "webhook_endpoint.created", endpoint.id, url, {"events": endpoint.events}
    )
    return WithSecret(endpoint, rules.secret_for(secret_key, endpoint.secret_salt))


async def for_organization(session: AsyncSession, organization_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == organization_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return (await session.scalars(statement)).all()


async def get(
    session: AsyncSession, endpoint_id: uuid.UUID, organization_id: uuid.UUID | None
) -> WebhookEndpoint:
    """The endpoint, if it is the organization's (any organization's: None, the CLI)."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or (organization_id is not None and endpoint.organization_id != organization_id):
        raise NotFoundError(f"No webhook endpoint {endpoint_id}.")
    return endpoint


async def roll_secret(
    session: AsyncSession, endpoint: WebhookEndpoint, *, secret_key: str, actor: Actor
) -> WithSecret:
    """A new signing secret at once: the old one signs nothing more."""
    endpoint.secret_salt = rules.new_salt()
    await session.flush()
    await AuditLogService(session=session).record(
        endpoint.organization_id, actor, "webhook_endpoint.secret_rolled", endpoint.id, endpoint.url
    )
    return WithSecret(endpoint, rules.secret_for(secret_key, endpoint.secret_salt))


async def set_enabled(
    session: AsyncSession, endpoint: WebhookEndpoint, enabled: bool, *, actor: Actor
) -> None:
    if endpoint.enabled == enabled:
        return
    endpoint.enabled = enabled
    endpoint.disabled_reason = "" if enabled else f"Disabled by {actor.label}."
    endpoint.failing_since = None
    await session.flush()
    action = "webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled"
    await AuditLogService(session=session).record(
        endpoint.organization_id, actor, action, endpoint.id, endpoint.url
    )


async def remove(session: AsyncSession, endpoint: WebhookEndpoint, *, actor: Actor) -> None:
    await AuditLogService(session=session).record(
        endpoint.organization_id, actor, "webhook_endpoint.deleted", endpoint.id, endpoint.url
    )
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))


async def send_test(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime) -> uuid.UUID:
    """A test event to this endpoint only, whatever it subscribes to; delivered by the worker like any."""
    event = await outbox.record(
        session,
        endpoint.organization_id,
        rules.TEST_EVENT,
        {"message": "A test event from QuickVisit.", "endpoint_id": str(endpoint.id)},
        now,
        endpoint_ids=[endpoint.id],
    )
    if event is None:
        raise InvalidFields([FieldError("/enabled", "Enable the endpoint to send it a test event.")])
    return event.id


async def delivery_log(
    session: AsyncSession, endpoint: WebhookEndpoint, limit: int = 100
) -> Sequence[WebhookAttempt]:
    """The endpoint's latest attempts, newest first."""
    statement = (
        select(WebhookAttempt)
        .where(WebhookAttempt.endpoint_id == endpoint.id)
        .order_by(WebhookAttempt.created_at.desc(), WebhookAttempt.id.desc())
        .limit(limit)
    )
    return (await session.scalars(statement)).all()
