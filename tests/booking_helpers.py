"""Helpers for availability and reservation tests: opening hours, closures, reservations and request bodies."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Litestar
from sqlalchemy import func, select

from app.domain.booking.models import Closure, IdempotencyRecord, OpeningHours, Reservation, Service
from app.lib.db import transaction
from tests.api_helpers import add_services, service_row
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff

LONDON = ZoneInfo("Europe/London")
EVERY_DAY = tuple(range(7))


async def add_opening_hours(
    app: Litestar, staff: Staff, ranges: Iterable[tuple[str, str]], weekdays: Iterable[int] = EVERY_DAY
) -> None:
    """The same ranges ("09:00", "13:00") on each of the weekdays (0 = Monday)."""
    async with transaction(alchemy_of(app)) as session:
        session.add_all(
            OpeningHours(
                organization_id=staff.organization.id,
                weekday=weekday,
                opens_at=time.fromisoformat(opens),
                closes_at=time.fromisoformat(closes),
            )
            for weekday in weekdays
            for opens, closes in ranges
        )


async def bookable_service(
    app: Litestar,
    staff: Staff,
    hours: Iterable[tuple[str, str]] = (("09:00", "17:00"),),
    weekdays: Iterable[int] = EVERY_DAY,
    **overrides: Any,
) -> Service:
    """A studio with a bookable service: open `hours` on `weekdays` (Europe/London), and one active service
    (an hour-long appointment every half hour, unless `overrides` say otherwise; see `service_row`)."""
    await add_opening_hours(app, staff, hours, weekdays)
    (service,) = await add_services(app, staff, service_row(staff, **overrides))
    return service


async def add_closure(app: Litestar, staff: Staff, first: date, last: date) -> None:
    async with transaction(alchemy_of(app)) as session:
        session.add(
            Closure(organization_id=staff.organization.id, start_date=first, end_date=last, reason="Holiday")
        )


async def add_reservation(
    app: Litestar,
    staff: Staff,
    service: Service,
    start: datetime,
    *,
    party_size: int = 1,
    api_key_id: uuid.UUID | None = None,
    customer_name: str = "Ada Lovelace",
    customer_phone: str | None = None,
    notes: str = "",
) -> Reservation:
    """A reservation written straight to the database: the past, or seats taken before a test."""
    reservation = Reservation(
        organization_id=staff.organization.id,
        service_id=service.id,
        api_key_id=api_key_id,
        start_at=start.astimezone(UTC),
        end_at=start.astimezone(UTC) + timedelta(minutes=service.duration_minutes),
        party_size=party_size,
        status="confirmed",
        customer_name=customer_name,
        customer_email="ada@example.com",
        customer_phone=customer_phone,
        notes=notes,
    )
    async with transaction(alchemy_of(app)) as session:
        session.add(reservation)
    return reservation


async def seats_taken(app: Litestar, service: Service) -> int:
    async with transaction(alchemy_of(app)) as session:
        taken = await session.scalar(
            select(func.coalesce(func.sum(Reservation.party_size), 0)).where(
                Reservation.service_id == service.id
            )
        )
    return int(taken or 0)


async def reservation_count(app: Litestar) -> int:
    async with transaction(alchemy_of(app)) as session:
        return int(await session.scalar(select(func.count()).select_from(Reservation)) or 0)


async def idempotency_records(app: Litestar) -> list[IdempotencyRecord]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(IdempotencyRecord))).all())


def local(day: date, clock: str, zone: ZoneInfo = LONDON) -> datetime:
    """A wall-clock time on `day` in `zone` (first occurrence if repeated)."""
    return datetime.combine(day, time.fromisoformat(clock), zone)


def days_ahead(days: int, zone: ZoneInfo = LONDON) -> date:
    return datetime.now(zone).date() + timedelta(days=days)


def booking(service: Service, start: datetime | str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service_id": str(service.id),
        "start": start if isinstance(start, str) else start.isoformat(),
        "party_size": 1,
        "customer": {"name": "Grace Hopper", "email": "grace@example.com", "phone": "+44 1632 960123"},
        "notes": "First visit",
    }
    body.update(overrides)
    return body


def next_transition(zone: ZoneInfo, *, forward: bool, after: date | None = None) -> date:
    """The next local date on which `zone`'s clocks go forward (spring) or back (autumn)."""
    day = after or datetime.now(zone).date() + timedelta(days=2)
    for _ in range(400):
        before = datetime.combine(day, time(), zone).utcoffset()
        following = datetime.combine(day + timedelta(days=1), time(), zone).utcoffset()
        assert before is not None and following is not None
        if (following > before) == forward and following != before:
            return day
        day += timedelta(days=1)
    raise AssertionError(f"{zone.key} has no DST change within 400 days")
