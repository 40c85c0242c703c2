"""Cancelling a reservation: through the API (idempotent by key), the staff page, or the customer's link.

One write transaction: lock the reservation, answer a replay of its Idempotency-Key, check that it may still
be cancelled, mark it cancelled (stamped as the organization's latest change) and remember the answer. The
seats are free for any availability read after the commit, since availability counts only confirmed ones.
Cancelling a cancelled reservation changes nothing and answers it as it is.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.booking import changes, events, idempotency, manage
from app.domain.booking.models import IdempotencyRecord, Reservation, Service
from app.domain.booking.reads import ReservationView
from app.domain.booking.reservations import Answer, Render
from app.domain.errors import (
    CancellationRefused,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotFound,
)
from app.lib.clock import Clock
from app.lib.db import SQLITE_BUSY_TIMEOUT_MS, write_transaction

CANCELLED = "cancelled"
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Keyed:
    """The Idempotency-Key of an API request and what makes the request itself."""

    api_key_id: uuid.UUID
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    answer: Answer | None
    """The rendered answer (None without `render`)."""
    replayed: bool
    changed: bool
    """False for a replay, or when the reservation was already cancelled."""
    reservation: Reservation | None = None
    """As it is now (None for a replay)."""


def _refuse_if_late(reservation: Reservation, service: Service, now: datetime, by_customer: bool) -> None:
    if reservation.start_at <= now:
        raise CancellationRefused(
            "reservation_started", "This reservation has already started and can no longer be cancelled."
        )
    if by_customer and manage.cancel_deadline(reservation, service) <= now:
        raise CancellationRefused(
            "within_cancellation_notice",
            "It is too close to the start to cancel online: please contact the business.",
        )


async def cancel(
    engine: AsyncEngine,
    clock: Clock,
    organization_id: uuid.UUID,
    public_id: str,
    *,
    reason: str = "",
    by_customer: bool = False,
    keyed: Keyed | None = None,
    render: Render | None = None,
) -> Cancelled:
    """Cancel the organization's reservation `public_id`; with `keyed`, once per Idempotency-Key."""
    for _attempt in range(_ATTEMPTS):
        try:
            return await _cancel(
                engine, clock, organization_id, public_id, reason, by_customer, keyed, render
            )
        except IntegrityError:
            # Another request stored the same key meanwhile (PostgreSQL): run again, and answer as its retry.
            continue
    raise IdempotencyKeyInProgress()


async def _cancel(
    engine: AsyncEngine,
    clock: Clock,
    organization_id: uuid.UUID,
    public_id: str,
    reason: str,
    by_customer: bool,
    keyed: Keyed | None,
    render: Render | None,
) -> Cancelled:
    # On SQLite, in turn with this process's bookings (an asyncio lock), not busy-waiting on the file lock.
    async with write_transaction(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"SET LOCAL lock_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
        # Locked first: a concurrent retry with the same key waits here, then reads the answer stored below.
        row = (
            await session.execute(
                select(Reservation, Service)
                .join(Service, Service.id == Reservation.service_id)
                .where(Reservation.public_id == public_id, Reservation.organization_id == organization_id)
                .with_for_update(of=Reservation)
            )
        ).first()
        now = clock()
        if keyed is not None:
            expired = (
                select(IdempotencyRecord.id)
                .where(IdempotencyRecord.api_key_id == keyed.api_key_id, IdempotencyRecord.expires_at <= now)
                .with_for_update(skip_locked=True)
            )
            await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
            record = await session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.api_key_id == keyed.api_key_id,
                    IdempotencyRecord.idempotency_key == keyed.key,
                )
            )
            view = (
                None
                if record is None
                else idempotency.RecordView(
                    record.request_fingerprint, cast(idempotency.State, record.state), record.expires_at
                )
            )
            decision = idempotency.decide(view, keyed.fingerprint, now)
            if decision == "reused":
                raise IdempotencyKeyReused()
            if decision == "in_progress":
                raise IdempotencyKeyInProgress()
            if decision == "replay" and record is not None:
                assert record.response_status is not None and record.response_body is not None
                stored = Answer(record.response_status, record.response_body, record.response_headers or {})
                return Cancelled(answer=stored, replayed=True, changed=False)
        if row is None:
            raise NotFound(f"No reservation {public_id!r}.")
        reservation, service = row.Reservation, row.Service
        changed = reservation.status != CANCELLED
        if changed:
            _refuse_if_late(reservation, service, now, by_customer)
            reservation.status = CANCELLED
            reservation.cancelled_at = now
            reservation.cancellation_reason = reason
            reservation.updated_at = await changes.stamp(session, organization_id, now)
            await session.flush()
            await events.record(
                session,
                "reservation.cancelled",
                organization_id,
                ReservationView.of(reservation, service),
                now,
            )
        answer = render(ReservationView.of(reservation, service)) if render is not None else None
        if keyed is not None and answer is not None:
            session.add(
                IdempotencyRecord(
                    api_key_id=keyed.api_key_id,
                    idempotency_key=keyed.key,
                    request_fingerprint=keyed.fingerprint,
                    state="completed",
                    claim_token=secrets.token_hex(16),
                    response_status=answer.status,
                    response_body=answer.body,
                    response_headers=answer.headers,
                    expires_at=now + idempotency.RETENTION,
                )
            )
            await session.flush()
    return Cancelled(answer=answer, replayed=False, changed=changed, reservation=reservation)
