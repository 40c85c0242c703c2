"""Availability and reservations: loading what the slot algorithm needs, and booking without double booking.

A booking is one write transaction of its own on the write path (`app/lib/writes.py`: Core statements on the
driver, no session): claim the Idempotency-Key (or replay, or refuse), lock the service row, re-check the slot
against committed reservations, insert, and complete the claim. A refusal or a failure rolls all of it back,
the claim included, so a retry runs afresh. Writers of one service queue on its row: SELECT ... FOR UPDATE on
PostgreSQL; on SQLite, the process's writers queue on an asyncio lock (`lib/db.py::write_lock`, shared with
`write_transaction`) and then BEGIN IMMEDIATE takes the database's single write lock. The check and the insert therefore never interleave with another booking's, on either database.
Two requests with the same key queue on the key's unique index (PostgreSQL) or the write lock (SQLite): the
second sees the first's completed record and replays it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import Integer, bindparam, delete, func, insert, null, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.api_keys.authentication import ApiClient
from app.domain.api_keys.models import ApiKey
from app.domain.booking import availability, changes, events, idempotency, manage
from app.domain.booking.availability import Occupancy, Refusal, Schedule, SlotRules
from app.domain.booking.models import (
    IdempotencyRecord,
    Reservation,
    Service,
    new_reservation_id,
)
from app.domain.booking.reads import (
    OCCUPANCY,
    BookingReads,
    ReservationView,
    ServiceRow,
    occupancy_window,
)
from app.domain.errors import (
    BookingRefused,
    FieldError,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidFields,
    NotFound,
)
from app.lib.clock import Clock
from app.lib.ids import row_id
from app.lib.writes import Transaction, writes_for

CONFIRMED = "confirmed"
_CLAIM_ATTEMPTS = 3


# --- Availability -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Availability:
    service: ServiceRow
    zone: ZoneInfo
    days: list[availability.Day]


async def find_availability(
    reads: BookingReads,
    client: ApiClient,
    service_id: str,
    first_day: date,
    last_day: date,
    zone: ZoneInfo | None,
    now: datetime,
) -> Availability:
    """Free slots from `first_day` to `last_day` in `zone` (None: the organization's own time zone)."""
    service = await reads.service(client, service_id)
    rules = service.rules
    schedule = await reads.schedule(client)
    zone = zone or schedule.time_zone
    # The organization's dates around the requested ones: the two zones' dates may differ by a day.
    margin = timedelta(days=2)
    bookings = await reads.occupancy(
        rules,
        service.id,
        datetime.combine(first_day - margin, time(), UTC),
        datetime.combine(last_day + margin + timedelta(days=1), time(), UTC),
    )
    days = availability.free_days(
        schedule, rules, bookings, first_day=first_day, last_day=last_day, zone=zone, now=now
    )
    return Availability(service=service, zone=zone, days=days)


# --- Booking ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewReservation:
    """A reservation request, cleaned: `start` in UTC, text stripped."""

    service_id: uuid.UUID
    start: datetime
    party_size: int
    customer_name: str
    customer_email: str
    customer_phone: str | None
    notes: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a booking request, as the caller renders it; stored so that retries get it again."""

    status: int
    body: str
    headers: dict[str, str]


# Renders a reservation as the answer to its request; called inside the transaction that writes it.
Render = Callable[[ReservationView], Answer]


@dataclass(frozen=True, slots=True)
class Booked:
    """A new reservation's answer, or the replay of an earlier one."""

    answer: Answer
    replayed: bool


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: uuid.UUID
    token: str


def _invalid(pointer: str, detail: str) -> InvalidFields:
    return InvalidFields([FieldError(pointer, detail)])


# The booking's statements, compiled once per database by the write path (app.lib.writes).
_FORGET_EXPIRED = delete(IdempotencyRecord).where(
    IdempotencyRecord.id.in_(
        select(IdempotencyRecord.id)
        .where(
            IdempotencyRecord.api_key_id == bindparam("api_key_id"),
            IdempotencyRecord.expires_at <= bindparam("now"),
        )
        # Rows another request is already deleting are skipped, so two requests never wait on each other.
        .with_for_update(skip_locked=True)
    )
)
_RECORD = select(
    IdempotencyRecord.request_fingerprint,
    IdempotencyRecord.state,
    IdempotencyRecord.expires_at,
    IdempotencyRecord.response_status,
    IdempotencyRecord.response_body,
    IdempotencyRecord.response_headers,
).where(
    IdempotencyRecord.api_key_id == bindparam("api_key_id"),
    IdempotencyRecord.idempotency_key == bindparam("key"),
)
_CLAIM = insert(IdempotencyRecord).values(
    id=bindparam("id"),
    api_key_id=bindparam("api_key_id"),
    idempotency_key=bindparam("key"),
    request_fingerprint=bindparam("fingerprint"),
    state="in_flight",
    claim_token=bindparam("token"),
    expires_at=bindparam("lease_end"),
    created_at=bindparam("now"),
    updated_at=bindparam("now"),
)
# The service row is the lock every booking of this service queues on (PostgreSQL; SQLite ignores it).
_SERVICE = (
    select(
        Service.name,
        Service.duration_minutes,
        Service.slot_interval_minutes,
        Service.capacity,
        Service.min_notice_minutes,
        Service.booking_horizon_days,
        Service.buffer_before_minutes,
        Service.buffer_after_minutes,
    )
    .where(
        Service.id == bindparam("service_id"),
        Service.organization_id == bindparam("organization_id"),
        Service.is_active.is_(True),
    )
    .with_for_update()
)
# PostgreSQL: the organization's change lock is taken with the service's row, in one round trip.
_SERVICE_AND_CHANGES = _SERVICE.add_columns(changes.CHANGE_LOCK)
# Read under the locks, in one statement: the reservations the new one could overlap (rows with a start), and
# the organization's latest change (the row without), which the new one is stamped after.
_OCCUPANCY_AND_LATEST = union_all(
    OCCUPANCY.add_columns(sa.cast(null(), Reservation.updated_at.type)),
    select(
        sa.cast(null(), Reservation.start_at.type),
        sa.cast(null(), Reservation.end_at.type),
        sa.cast(null(), Integer),
        func.max(Reservation.updated_at),
    ).where(Reservation.organization_id == bindparam("organization_id")),
)
_RESERVATION = insert(Reservation).values(
    id=bindparam("id"),
    public_id=bindparam("public_id"),
    organization_id=bindparam("organization_id"),
    service_id=bindparam("service_id"),
    api_key_id=bindparam("api_key_id"),
    start_at=bindparam("start_at"),
    end_at=bindparam("end_at"),
    party_size=bindparam("party_size"),
    status=CONFIRMED,
    customer_name=bindparam("customer_name"),
    customer_email=bindparam("customer_email"),
    customer_phone=bindparam("customer_phone"),
    notes=bindparam("notes"),
    cancellation_reason="",
    manage_token_hash=bindparam("manage_token_hash"),
    created_at=bindparam("now"),
    updated_at=bindparam("updated_at"),
)
_COMPLETE = (
    update(IdempotencyRecord)
    .where(
        IdempotencyRecord.id == bindparam("record_id"), IdempotencyRecord.claim_token == bindparam("token")
    )
    .values(
        state="completed",
        response_status=bindparam("status"),
        response_body=bindparam("body"),
        response_headers=bindparam("headers"),
        expires_at=bindparam("retained_until"),
        updated_at=bindparam("now"),
    )
)

# PostgreSQL: the insert and the claim's completion in one statement, one round trip less under the locks.
_RESERVATION_AND_COMPLETE = _COMPLETE.add_cte(_RESERVATION.cte("reservation"))


async def _claim(
    transaction: Transaction, now: datetime, api_key_id: uuid.UUID, key: str, fingerprint: str
) -> Claim | Booked:
    """Take the key for this request, or answer from its record, in the booking's transaction."""
    # Forget this API key's expired records first: what is left is current.
    await transaction.execute(_FORGET_EXPIRED, {"api_key_id": api_key_id, "now": now})
    found = await transaction.rows(_RECORD, {"api_key_id": api_key_id, "key": key})
    view = None
    if found:
        stored_fingerprint, state, expires_at, status, body, headers = found[0]
        view = idempotency.RecordView(stored_fingerprint, cast(idempotency.State, state), expires_at)
    decision = idempotency.decide(view, fingerprint, now)
    if decision == "reused":
        raise IdempotencyKeyReused()
    if decision == "in_progress":
        raise IdempotencyKeyInProgress()
    if decision == "replay":
        assert status is not None and body is not None
        return Booked(answer=Answer(status, body, headers or {}), replayed=True)
    claim = Claim(record_id=row_id(), token=secrets.token_hex(16))
    # Inserted before the service is locked: on PostgreSQL a second request with this key waits here, on
    # the key's unique index, until the first commits, and then replays it.
    await transaction.execute(
        _CLAIM,
        {
            "id": claim.record_id,
            "api_key_id": api_key_id,
            "key": key,
            "fingerprint": fingerprint,
            "token": claim.token,
            "lease_end": now + idempotency.LEASE,
            "now": now,
        },
    )
    return claim


def _refused(refusal: Refusal) -> BookingRefused:
    extra = {} if refusal.remaining_capacity is None else {"remaining_capacity": refusal.remaining_capacity}
    return BookingRefused(refusal.code, refusal.detail, extra)


async def _book(
    transaction: Transaction,
    now: datetime,
    client: ApiClient,
    schedule: Schedule,
    request: NewReservation,
    claim: Claim,
    render: Render,
    manage_secret: str,
) -> Booked:
    # Read before anything is locked: whoever waits for this booking's locks does not wait for this too.
    subscribers = await events.subscribers(transaction, "reservation.created", client.organization_id)
    locked = {"service_id": request.service_id, "organization_id": client.organization_id}
    if transaction.dialect_name == "postgresql":
        found = await transaction.rows(
            _SERVICE_AND_CHANGES, locked | changes.lock_values(client.organization_id)
        )
        found = [row[:-1] for row in found]
    else:  # SQLite's write lock, held since BEGIN, is both locks
        found = await transaction.rows(_SERVICE, locked)
    if not found:
        raise _invalid("/service_id", "No active service with this id.")
    service_name, *rule_values = found[0]
    rules = SlotRules(*rule_values)
    if request.party_size > rules.capacity:
        raise _invalid("/party_size", f"This service takes at most {rules.capacity} per booking.")
    # Before any date arithmetic: a start far in the past or future is refused, not overflowed.
    if refusal := availability.check_timing(rules, request.start, now=now):
        raise _refused(refusal)
    window = occupancy_window(rules, request.service_id, request.start, request.start)
    bookings: list[Occupancy] = []
    latest: datetime | None = None
    for start_at, end_at, party_size, latest_change in await transaction.rows(
        _OCCUPANCY_AND_LATEST, window | {"organization_id": client.organization_id}
    ):
        if start_at is None:
            latest = latest_change
        else:
            bookings.append(Occupancy(start_at, end_at, party_size))
    checked = availability.check_booking(
        schedule, rules, bookings, start=request.start, party_size=request.party_size, now=now
    )
    if isinstance(checked, Refusal):
        raise _refused(checked)

    public_id = new_reservation_id()
    manage_token_hash = manage.token_hash(manage.token_for(manage_secret, public_id))
    updated_at = changes.stamp_after(latest, now)
    inserted = {
        "id": row_id(),
        "public_id": public_id,
        "organization_id": client.organization_id,
        "service_id": request.service_id,
        "api_key_id": client.key_id,
        "start_at": checked.start,
        "end_at": checked.end,
        "party_size": request.party_size,
        "customer_name": request.customer_name,
        "customer_email": request.customer_email,
        "customer_phone": request.customer_phone,
        "notes": request.notes,
        "manage_token_hash": manage_token_hash,
        "now": now,
        "updated_at": updated_at,
    }
    reservation = ReservationView(
        public_id=public_id,
        status=CONFIRMED,
        start_at=checked.start,
        end_at=checked.end,
        party_size=request.party_size,
        customer_name=request.customer_name,
        customer_email=request.customer_email,
        created_at=now,
        updated_at=updated_at,
        cancelled_at=None,
        manage_token_hash=manage_token_hash,
        service_id=request.service_id,
        service_name=service_name,
    )
    await events.record_written(
        transaction, "reservation.created", client.organization_id, reservation, now, subscribers
    )
    answer = render(reservation)
    # Completed in the booking's own transaction: a reservation never exists without its replayable answer.
    completed = {
        "record_id": claim.record_id,
        "token": claim.token,
        "status": answer.status,
        "body": answer.body,
        "headers": answer.headers,
        "retained_until": now + idempotency.RETENTION,
        "now": now,
    }
    if transaction.dialect_name == "postgresql":
        await transaction.execute(_RESERVATION_AND_COMPLETE, inserted | completed)
    else:
        await transaction.execute(_RESERVATION, inserted)
        await transaction.execute(_COMPLETE, completed)
    return Booked(answer=answer, replayed=False)


async def book(
    engine: AsyncEngine,
    reads: BookingReads,
    clock: Clock,
    client: ApiClient,
    key: str,
    fingerprint: str,
    request: NewReservation,
    render: Render,
    manage_secret: str,
) -> Booked:
    """Book once per Idempotency-Key: a new reservation (answered by `render`), the earlier answer again,
    or an error, in one write transaction on the write path (app.lib.writes).

    Only a success is remembered; a refusal or failure rolls the claim back with the rest, so that a retry
    runs afresh.
    """
    # The schedule at the catalog version the request's key lookup read (cached per process).
    schedule = await reads.schedule(client)
    writes = writes_for(engine)
    for _attempt in range(_CLAIM_ATTEMPTS):
        try:
            async with writes.transaction() as transaction:
                now = clock()
                claimed = await _claim(transaction, now, client.key_id, key, fingerprint)
                if isinstance(claimed, Booked):
                    return claimed
                return await _book(
                    transaction, now, client, schedule, request, claimed, render, manage_secret
                )
        except IntegrityError:
            # Another request inserted the same key between our read and our insert (PostgreSQL lets both
            # read) and has committed since: read again, and answer as that request's retry.
            continue
    raise IdempotencyKeyInProgress()


# --- The staff page ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaffRow:
    reservation: Reservation
    service_name: str
    key_name: str | None
    key_prefix: str | None


@dataclass(frozen=True, slots=True)
class StaffListing:
    upcoming: list[StaffRow]
    past: list[StaffRow]
    truncated: bool
    """More reservations match than are shown."""


def _staff_rows(organization_id: uuid.UUID) -> Any:
    return (
        select(Reservation, Service.name, ApiKey.name, ApiKey.prefix)
        .join(Service, Service.id == Reservation.service_id)
        .outerjoin(ApiKey, ApiKey.id == Reservation.api_key_id)
        .where(Reservation.organization_id == organization_id)
    )


async def staff_row(session: AsyncSession, organization_id: uuid.UUID, public_id: str) -> StaffRow:
    row = (
        await session.execute(_staff_rows(organization_id).where(Reservation.public_id == public_id))
    ).first()
    if row is None:
        raise NotFound(f"No reservation {public_id!r}.")
    return StaffRow(*row)


async def list_for_staff(
    session: AsyncSession,
    organization_id: uuid.UUID,
    zone: ZoneInfo,
    *,
    day: date | None = None,
    service_id: uuid.UUID | None = None,
    now: datetime,
    limit: int = 100,
) -> StaffListing:
    """Upcoming reservations soonest first (those under way included), then past ones latest first."""
    statement = _staff_rows(organization_id)
    if day is not None:
        statement = statement.where(
            Reservation.start_at >= datetime.combine(day, time(), zone).astimezone(UTC),
            Reservation.start_at < datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC),
        )
    if service_id is not None:
        statement = statement.where(Reservation.service_id == service_id)

    async def rows(*conditions: Any, order: Any) -> list[StaffRow]:
        result = await session.execute(statement.where(*conditions).order_by(order).limit(limit + 1))
        return [StaffRow(*row) for row in result]

    upcoming = await rows(Reservation.end_at > now, order=Reservation.start_at.asc())
    past = await rows(Reservation.end_at <= now, order=Reservation.start_at.desc())
    return StaffListing(
        upcoming=upcoming[:limit], past=past[:limit], truncated=len(upcoming) > limit or len(past) > limit
    )
