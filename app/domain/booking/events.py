"""The webhook events of reservations, written in the transaction of the change (the outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.booking.reads import ReservationView
from app.domain.webhooks import outbox
from app.lib.writes import Transaction


def _at(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def reservation_data(reservation: ReservationView) -> dict[str, Any]:
    """A reservation as webhook events carry it: as the API shows it, without the customer's manage link."""
    return {
        "id": reservation.public_id,
        "status": reservation.status,
        "service": {"id": str(reservation.service_id), "name": reservation.service_name},
        "start": _at(reservation.start_at),
        "end": _at(reservation.end_at),
        "party_size": reservation.party_size,
        "customer": {"name": reservation.customer_name, "email": reservation.customer_email},
        "created_at": _at(reservation.created_at),
        "updated_at": reservation.updated_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "cancelled_at": _at(reservation.cancelled_at),
    }


async def record(
    session: AsyncSession,
    event_type: str,
    organization_id: uuid.UUID,
    reservation: ReservationView,
    now: datetime,
) -> None:
    await outbox.record(session, organization_id, event_type, reservation_data(reservation), now)


async def subscribers(
    transaction: Transaction, event_type: str, organization_id: uuid.UUID
) -> list[uuid.UUID]:
    """The endpoints `record_written` will write to (read first: before the transaction locks anything)."""
    return await outbox.subscribers(transaction, organization_id, event_type)


async def record_written(
    transaction: Transaction,
    event_type: str,
    organization_id: uuid.UUID,
    reservation: ReservationView,
    now: datetime,
    targets: Sequence[uuid.UUID],
) -> None:
    """`record` on the write path (app.lib.writes), to the endpoints `subscribers` found."""
    data = reservation_data(reservation)
    await outbox.record_written(transaction, organization_id, event_type, data, now, targets)
