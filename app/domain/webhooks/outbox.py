"""The outbox: an event and its deliveries, added to the transaction of the change it reports, so that a crash
never loses an event nor sends one for a change that rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.lib.ids import row_id
from app.lib.writes import Transaction


def body_of(event_id: uuid.UUID, event_type: str, created_at: datetime, data: dict[str, Any]) -> str:
    return msgspec.json.encode(
        {
            "id": str(event_id),
            "type": event_type,
            "created_at": created_at.astimezone(UTC).isoformat(timespec="seconds"),
            "data": data,
        }
    ).decode()


async def record(
    session: AsyncSession,
    organization_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
    *,
    endpoint_ids: Sequence[uuid.UUID] | None = None,
) -> WebhookEvent | None:
    """The event, with a delivery to each enabled endpoint that takes it (or to `endpoint_ids` only, the test
    event); None, and nothing written, when no endpoint takes it."""
    statement = select(WebhookEndpoint.id, WebhookEndpoint.events).where(
        WebhookEndpoint.organization_id == organization_id, WebhookEndpoint.enabled.is_(True)
    )
    if endpoint_ids is not None:
        statement = statement.where(WebhookEndpoint.id.in_(endpoint_ids))
    rows = (await session.execute(statement)).all()
    targets = [row.id for row in rows if endpoint_ids is not None or event_type in row.events]
    if not targets:
        return None
    event_id = uuid.uuid4()
    event = WebhookEvent(
        id=event_id,
        organization_id=organization_id,
        type=event_type,
        body=body_of(event_id, event_type, now, data),
        created_at=now,
        updated_at=now,
    )
    session.add(event)
    await session.flush()
    session.add_all(
        WebhookDelivery(
            event_id=event_id, endpoint_id=target, status="pending", attempts=0, next_attempt_at=now
        )
        for target in targets
    )
    await session.flush()
    return event


_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.events).where(
    WebhookEndpoint.organization_id == bindparam("organization_id"), WebhookEndpoint.enabled.is_(True)
)
_EVENT = insert(WebhookEvent).values(
    id=bindparam("id"),
    organization_id=bindparam("organization_id"),
    type=bindparam("type"),
    body=bindparam("body"),
    created_at=bindparam("now"),
    updated_at=bindparam("now"),
)
_DELIVERY = insert(WebhookDelivery).values(
    id=bindparam("id"),
    event_id=bindparam("event_id"),
    endpoint_id=bindparam("endpoint_id"),
    status="pending",
    attempts=0,
    next_attempt_at=bindparam("now"),
    created_at=bindparam("now"),
    updated_at=bindparam("now"),
)


async def subscribers(
    transaction: Transaction, organization_id: uuid.UUID, event_type: str
) -> list[uuid.UUID]:
    """The enabled endpoints that take `event_type`, on the write path (app.lib.writes)."""
    rows = await transaction.rows(_ENDPOINTS, {"organization_id": organization_id})
    return [endpoint_id for endpoint_id, events in rows if event_type in events]


async def record_written(
    transaction: Transaction,
    organization_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
    targets: Sequence[uuid.UUID],
) -> uuid.UUID | None:
    """`record` on the write path, to `targets` (`subscribers`): the event's id, or None without targets."""
    if not targets:
        return None
    event_id = uuid.uuid4()
    body = body_of(event_id, event_type, now, data)
    await transaction.execute(
        _EVENT,
        {"id": event_id, "organization_id": organization_id, "type": event_type, "body": body, "now": now},
    )
    for target in targets:
        await transaction.execute(
            _DELIVERY, {"id": row_id(), "event_id": event_id, "endpoint_id": target, "now": now}
        )
    return event_id
