"""Availability and reservations: loading what the slot algorithm needs, and booking without double booking.

A booking runs in two short transactions of its own, never in the request's session:
1. claim the Idempotency-Key (or replay, or refuse) and commit, so a concurrent retry sees the claim;
2. lock the service row, re-check the slot against committed reservations, insert, and complete the claim.
Writers of one service queue on its row: SELECT ... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite
(which takes the database's single write lock). The check and the insert therefore never interleave with
another booking's, on either database.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.problems import ApiProblem, FieldError
from app.db import SQLITE_BUSY_TIMEOUT_MS, writer_engine
from app.domain.accounts.models import Organization
from app.domain.api_keys.authentication import ApiClient
from app.domain.api_keys.models import ApiKey
from app.domain.booking import availability, idempotency
from app.domain.booking.availability import Occupancy, Refusal, Schedule, SlotRules
from app.domain.booking.models import (
    Closure,
    IdempotencyRecord,
    OpeningHours,
    Reservation,
    Service,
    new_reservation_id,
)
from app.domain.booking.schemas import NewReservation, ReservationOut
from app.domain.booking.services import get_active

logger = logging.getLogger(__name__)

CONFIRMED = "confirmed"
RESERVATIONS_PATH = "/api/v1/reservations"
_CLAIM_ATTEMPTS = 3
_REFUSAL_STATUS = {"slot_unavailable": 409, "insufficient_capacity": 409}


def rules_of(service: Service) -> SlotRules:
    return SlotRules(
        duration_minutes=service.duration_minutes,
        slot_interval_minutes=service.slot_interval_minutes,
        capacity=service.capacity,
        min_notice_minutes=service.min_notice_minutes,
        booking_horizon_days=service.booking_horizon_days,
        buffer_before_minutes=service.buffer_before_minutes,
        buffer_after_minutes=service.buffer_after_minutes,
    )


async def load_schedule(
    session: AsyncSession, organization_id: uuid.UUID, first_day: date, last_day: date
) -> Schedule:
    """Opening hours, and the closures that touch these local dates, in the organization's time zone."""
    time_zone = (
        await session.execute(select(Organization.time_zone).where(Organization.id == organization_id))
    ).scalar_one()
    zone = ZoneInfo(time_zone)  # validated when the organization was created
    hours = await session.scalars(select(OpeningHours).where(OpeningHours.organization_id == organization_id))
    closures = await session.scalars(
        select(Closure).where(
            Closure.organization_id == organization_id,
            Closure.start_date <= last_day,
            Closure.end_date >= first_day,
        )
    )
    return Schedule(
        time_zone=zone,
        opening_hours=tuple(
            availability.OpeningRange(item.weekday, item.opens_at, item.closes_at) for item in hours
        ),
        closures=tuple(availability.Closure(item.start_date, item.end_date) for item in closures),
    )


async def load_occupancy(
    session: AsyncSession, service: Service, first_start: datetime, last_start: datetime
) -> list[Occupancy]:
    """Confirmed reservations of the service that can overlap a slot starting between the two instants."""
    rules = rules_of(service)
    # A reservation blocks a slot when their buffered spans overlap: widen the window by both buffers.
    reach = timedelta(minutes=rules.buffer_before_minutes + rules.buffer_after_minutes)
    rows = await session.execute(
        select(Reservation.start_at, Reservation.end_at, Reservation.party_size).where(
            Reservation.service_id == service.id,
            Reservation.status == CONFIRMED,
            Reservation.start_at < last_start + rules.duration + reach,
            Reservation.end_at > first_start - reach,
        )
    )
    return [Occupancy(row.start_at, row.end_at, row.party_size) for row in rows]


# --- Availability -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Availability:
    service: Service
    zone: ZoneInfo
    days: list[availability.Day]


async def find_availability(
    session: AsyncSession,
    client: ApiClient,
    service_id: str,
    first_day: date,
    last_day: date,
    zone: ZoneInfo | None,
    now: datetime | None = None,
) -> Availability:
    """Free slots from `first_day` to `last_day` in `zone` (None: the organization's own time zone)."""
    now = now or datetime.now(UTC)
    service = await get_active(session, Service, client.organization_id, service_id)
    # The organization's dates around the requested ones: the two zones' dates may differ by a day.
    margin = timedelta(days=2)
    schedule = await load_schedule(session, client.organization_id, first_day - margin, last_day + margin)
    zone = zone or schedule.time_zone
    bookings = await load_occupancy(
        session,
        service,
        datetime.combine(first_day - margin, time(), UTC),
        datetime.combine(last_day + margin + timedelta(days=1), time(), UTC),
    )
    days = availability.free_days(
        schedule, rules_of(service), bookings, first_day=first_day, last_day=last_day, zone=zone, now=now
    )
    return Availability(service=service, zone=zone, days=days)


# --- Reading reservations ---------------------------------------------------------------------------


async def get_reservation(
    session: AsyncSession, organization_id: uuid.UUID, public_id: str
) -> tuple[Reservation, Service]:
    """The reservation and its service, if this organization's; anything else is simply not found."""
    row = (
        await session.execute(
            select(Reservation, Service)
            .join(Service, Service.id == Reservation.service_id)
            .where(Reservation.public_id == public_id, Reservation.organization_id == organization_id)
        )
    ).first()
    if row is None:
        raise ApiProblem(404, "not_found", f"No reservation {public_id!r}.")
    return row.Reservation, row.Service


# --- Booking ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Booked:
    """What POST /reservations answers: a new reservation, or the replay of an earlier answer."""

    status_code: int
    reservation: ReservationOut
    location: str
    replayed: bool


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: uuid.UUID
    token: str


def _invalid(pointer: str, detail: str) -> ApiProblem:
    return ApiProblem(
        422, "validation_error", "The request has invalid fields.", errors=[FieldError(pointer, detail)]
    )


def _in_progress() -> ApiProblem:
    return ApiProblem(
        409,
        "idempotency_request_in_progress",
        "A request with this Idempotency-Key is still being processed. Retry shortly.",
        headers={"Retry-After": "1"},
    )


def _replay(record: IdempotencyRecord) -> Booked:
    assert record.response_status is not None and record.response_body is not None
    headers = record.response_headers or {}
    return Booked(
        status_code=record.response_status,
        reservation=msgspec.json.decode(record.response_body, type=ReservationOut),
        location=headers.get("Location", ""),
        replayed=True,
    )


async def _claim(engine: AsyncEngine, api_key_id: uuid.UUID, key: str, fingerprint: str) -> Claim | Booked:
    """Take the key for this request, or answer from its record. Committed before the booking begins."""
    for _attempt in range(_CLAIM_ATTEMPTS):
        now = datetime.now(UTC)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                # Forget this API key's expired records first: what is left is current. Rows another
                # request is already deleting are skipped, so two requests never wait on each other here.
                expired = (
                    select(IdempotencyRecord.id)
                    .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.expires_at <= now)
                    .with_for_update(skip_locked=True)
                )
                await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(expired)))
                record = await session.scalar(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.idempotency_key == key
                    )
                )
                view = (
                    None
                    if record is None
                    else idempotency.RecordView(
                        record.request_fingerprint, cast(idempotency.State, record.state), record.expires_at
                    )
                )
                decision = idempotency.decide(view, fingerprint, now)
                if decision == "reused":
                    raise ApiProblem(
                        422,
                        "idempotency_key_reused",
                        "This Idempotency-Key was already used for a different request. "
                        "Use a new key for a new request.",
                    )
                if decision == "in_progress":
                    raise _in_progress()
                if decision == "replay" and record is not None:
                    return _replay(record)
                claim = IdempotencyRecord(
                    api_key_id=api_key_id,
                    idempotency_key=key,
                    request_fingerprint=fingerprint,
                    state="in_flight",
                    claim_token=secrets.token_hex(16),
                    expires_at=now + idempotency.LEASE,
                )
                session.add(claim)
                await session.flush()
                return Claim(record_id=claim.id, token=claim.claim_token)
        except IntegrityError:
            # Another request claimed the same key between our read and our insert (PostgreSQL lets both
            # read): read again, and answer as that request's retry.
            continue
    raise _in_progress()


async def _release(engine: AsyncEngine, claim: Claim) -> None:
    """Give the key back after a refusal or a failure, so a retry can run. A no-op once completed."""
    try:
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.id == claim.record_id,
                    IdempotencyRecord.claim_token == claim.token,
                    IdempotencyRecord.state == "in_flight",
                )
            )
    except Exception:
        # The claim's lease runs out on its own; until then a retry is told to wait.
        logger.warning("could not release idempotency claim %s", claim.record_id, exc_info=True)


def _refused(refusal: Refusal) -> ApiProblem:
    extra = {} if refusal.remaining_capacity is None else {"remaining_capacity": refusal.remaining_capacity}
    return ApiProblem(_REFUSAL_STATUS.get(refusal.code, 422), refusal.code, refusal.detail, extra=extra)


async def _book(engine: AsyncEngine, client: ApiClient, request: NewReservation, claim: Claim) -> Booked:
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            # Wait for another booking's lock as long as SQLite would, then answer 503, not hang.
            await session.execute(text(f"SET LOCAL lock_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
        # The service row is the lock every booking of this service queues on.
        service = await session.scalar(
            select(Service)
            .where(
                Service.id == request.service_id,
                Service.organization_id == client.organization_id,
                Service.is_active.is_(True),
            )
            .with_for_update()
        )
        if service is None:
            raise _invalid("/service_id", "No active service with this id.")
        if request.party_size > service.capacity:
            raise _invalid("/party_size", f"This service takes at most {service.capacity} per booking.")
        now = datetime.now(UTC)
        day = request.start.date()
        schedule = await load_schedule(
            session, client.organization_id, day - timedelta(days=1), day + timedelta(days=1)
        )
        bookings = await load_occupancy(session, service, request.start, request.start)
        checked = availability.check_booking(
            schedule, rules_of(service), bookings, start=request.start, party_size=request.party_size, now=now
        )
        if isinstance(checked, Refusal):
            raise _refused(checked)

        reservation = Reservation(
            public_id=new_reservation_id(),
            organization_id=client.organization_id,
            service_id=service.id,
            api_key_id=client.key_id,
            start_at=checked.start,
            end_at=checked.end,
            party_size=request.party_size,
            status=CONFIRMED,
            customer_name=request.customer_name,
            customer_email=request.customer_email,
            customer_phone=request.customer_phone,
            notes=request.notes,
            created_at=now,
            updated_at=now,
        )
        session.add(reservation)
        await session.flush()
        out = ReservationOut.of(reservation, service)
        location = f"{RESERVATIONS_PATH}/{reservation.public_id}"
        # Completed in the booking's own transaction: a reservation never exists without its replayable answer.
        completed = await session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == claim.record_id,
                IdempotencyRecord.claim_token == claim.token,
                IdempotencyRecord.state == "in_flight",
            )
            .values(
                state="completed",
                response_status=201,
                response_body=msgspec.json.encode(out).decode(),
                response_headers={"Location": location},
                expires_at=now + idempotency.RETENTION,
            )
        )
        if completed.rowcount != 1:  # type: ignore[attr-defined]
            # The claim's lease ran out and a retry took the key over: that retry books, not this one.
            raise _in_progress()
    return Booked(status_code=201, reservation=out, location=location, replayed=False)


async def book(
    engine: AsyncEngine, client: ApiClient, key: str, fingerprint: str, request: NewReservation
) -> Booked:
    """Book once per Idempotency-Key: a new reservation, the earlier answer again, or an ApiProblem.

    Only a success is remembered; a refusal or failure releases the key so that a retry runs afresh.
    """
    writer = writer_engine(engine)
    claimed = await _claim(writer, client.key_id, key, fingerprint)
    if isinstance(claimed, Booked):
        return claimed
    try:
        return await _book(writer, client, request, claimed)
    except BaseException:
        # Shielded: a client hanging up cancels this task, and the key must still be given back.
        await asyncio.shield(_release(writer, claimed))
        raise


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


async def list_for_staff(
    session: AsyncSession,
    organization_id: uuid.UUID,
    zone: ZoneInfo,
    *,
    day: date | None = None,
    service_id: uuid.UUID | None = None,
    now: datetime | None = None,
    limit: int = 100,
) -> StaffListing:
    """Upcoming reservations soonest first (those under way included), then past ones latest first."""
    now = now or datetime.now(UTC)
    statement = (
        select(Reservation, Service.name, ApiKey.name, ApiKey.prefix)
        .join(Service, Service.id == Reservation.service_id)
        .outerjoin(ApiKey, ApiKey.id == Reservation.api_key_id)
        .where(Reservation.organization_id == organization_id)
    )
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
