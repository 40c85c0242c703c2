"""What the Public Booking API takes and returns: the catalog, availability and reservations."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Final
from zoneinfo import ZoneInfo

import msgspec

from app.api.problems import ApiProblem, FieldError
from app.domain.booking.availability import Day
from app.domain.booking.models import Package, Reservation, Service

CUSTOMER_NAME_MAX_LENGTH: Final = 200
CUSTOMER_EMAIL_MAX_LENGTH: Final = 320
CUSTOMER_PHONE_MAX_LENGTH: Final = 32
NOTES_MAX_LENGTH: Final = 2000
PARTY_SIZE_MAX: Final = 1000
# Deliberately loose: one @, something on each side, a dot in the domain. Deliverability is the mailer's job.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# E.164 digits after dropping the usual separators.
_PHONE = re.compile(r"^\+?[0-9]{5,15}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def rfc3339(moment: datetime, zone: ZoneInfo | None = None) -> str:
    """`moment` as RFC 3339 with the offset of `zone` (UTC by default), to the second."""
    return moment.astimezone(zone or UTC).isoformat(timespec="seconds")


class Price(msgspec.Struct):
    amount: int
    """In minor units of the currency (pence, cents)."""
    currency: str
    """ISO 4217 code."""


class ServiceOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str
    duration_minutes: int
    price: Price
    capacity: int
    """1 for an appointment; more for a class."""
    slot_interval_minutes: int
    min_notice_minutes: int
    booking_horizon_days: int
    buffer_before_minutes: int
    buffer_after_minutes: int

    @classmethod
    def of(cls, service: Service) -> ServiceOut:
        return cls(
            id=service.id,
            name=service.name,
            description=service.description,
            duration_minutes=service.duration_minutes,
            price=Price(amount=service.price_amount, currency=service.currency),
            capacity=service.capacity,
            slot_interval_minutes=service.slot_interval_minutes,
            min_notice_minutes=service.min_notice_minutes,
            booking_horizon_days=service.booking_horizon_days,
            buffer_before_minutes=service.buffer_before_minutes,
            buffer_after_minutes=service.buffer_after_minutes,
        )


class PackageOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str
    service_ids: list[uuid.UUID]
    session_count: int
    validity_days: int
    price: Price

    @classmethod
    def of(cls, package: Package) -> PackageOut:
        return cls(
            id=package.id,
            name=package.name,
            description=package.description,
            service_ids=[service.id for service in package.services],
            session_count=package.session_count,
            validity_days=package.validity_days,
            price=Price(amount=package.price_amount, currency=package.currency),
        )


class ServiceList(msgspec.Struct):
    data: list[ServiceOut]
    has_more: bool
    next_cursor: str | None


class PackageList(msgspec.Struct):
    data: list[PackageOut]
    has_more: bool
    next_cursor: str | None


# --- Availability -----------------------------------------------------------------------------------


class SlotOut(msgspec.Struct):
    start: str
    """RFC 3339, with the offset of the requested time zone."""
    end: str
    remaining_capacity: int
    """Places still free: 1 for a free appointment, up to the capacity for a class."""


class DayOut(msgspec.Struct):
    date: date
    """A date in the requested time zone."""
    slots: list[SlotOut]


class AvailabilityOut(msgspec.Struct):
    service_id: uuid.UUID
    time_zone: str
    """The IANA time zone the days are grouped in and the times are shown in."""
    days: list[DayOut]

    @classmethod
    def of(cls, service_id: uuid.UUID, zone: ZoneInfo, days: list[Day]) -> AvailabilityOut:
        return cls(
            service_id=service_id,
            time_zone=zone.key,
            days=[
                DayOut(
                    date=day.date,
                    slots=[
                        SlotOut(
                            start=rfc3339(slot.start, zone),
                            end=rfc3339(slot.end, zone),
                            remaining_capacity=slot.remaining_capacity,
                        )
                        for slot in day.slots
                    ],
                )
                for day in days
            ],
        )


# --- Reservations -----------------------------------------------------------------------------------


class CustomerIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(max_length=CUSTOMER_NAME_MAX_LENGTH)]
    email: Annotated[str, msgspec.Meta(max_length=CUSTOMER_EMAIL_MAX_LENGTH)]
    phone: Annotated[str, msgspec.Meta(max_length=CUSTOMER_PHONE_MAX_LENGTH)] | None = None


class ReservationIn(msgspec.Struct):
    """A reservation request. Unknown fields are ignored."""

    service_id: uuid.UUID
    start: Annotated[
        datetime,
        msgspec.Meta(
            description="A slot start from GET /availability: RFC 3339 with an offset (any offset).",
            examples=["2030-03-04T10:00:00+00:00"],
        ),
    ]
    customer: CustomerIn
    party_size: Annotated[int, msgspec.Meta(ge=1, le=PARTY_SIZE_MAX)] = 1
    notes: Annotated[str, msgspec.Meta(max_length=NOTES_MAX_LENGTH)] | None = None

    def canonical(self) -> bytes:
        """The request as canonical JSON (sorted keys, defaults filled in), for idempotency fingerprints."""
        return msgspec.json.encode(self, order="sorted")

    def validated(self) -> NewReservation:
        """The request, cleaned; what types alone cannot check raises a 422 naming every bad field."""
        errors: list[FieldError] = []
        if self.start.tzinfo is None:
            errors.append(FieldError("/start", "Include an offset, e.g. 2030-03-04T10:00:00+00:00."))
        name = self.customer.name.strip()
        if not name:
            errors.append(FieldError("/customer/name", "The customer's name is required."))
        email = self.customer.email.strip()
        if not _EMAIL.match(email):
            errors.append(FieldError("/customer/email", "Enter an email address like name@example.com."))
        phone = (self.customer.phone or "").strip() or None
        if phone is not None and not _PHONE.match(_PHONE_SEPARATORS.sub("", phone)):
            errors.append(
                FieldError("/customer/phone", "Enter a phone number of 5 to 15 digits, e.g. +441632960123.")
            )
        if errors:
            raise ApiProblem(422, "validation_error", "The request has invalid fields.", errors=errors)
        return NewReservation(
            service_id=self.service_id,
            start=self.start.astimezone(UTC),
            party_size=self.party_size,
            customer_name=name,
            customer_email=email,
            customer_phone=phone,
            notes=(self.notes or "").strip(),
        )


@dataclass(frozen=True, slots=True)
class NewReservation:
    service_id: uuid.UUID
    start: datetime
    party_size: int
    customer_name: str
    customer_email: str
    customer_phone: str | None
    notes: str


class ServiceRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class CustomerOut(msgspec.Struct):
    name: str
    email: str


class ReservationOut(msgspec.Struct):
    id: str
    """Unguessable: `res_` and 24 random characters."""
    status: str
    """"confirmed"."""
    service: ServiceRef
    start: str
    """RFC 3339, in UTC."""
    end: str
    party_size: int
    customer: CustomerOut
    created_at: str

    @classmethod
    def of(cls, reservation: Reservation, service: Service) -> ReservationOut:
        return cls(
            id=reservation.public_id,
            status=reservation.status,
            service=ServiceRef(id=service.id, name=service.name),
            start=rfc3339(reservation.start_at),
            end=rfc3339(reservation.end_at),
            party_size=reservation.party_size,
            customer=CustomerOut(name=reservation.customer_name, email=reservation.customer_email),
            created_at=rfc3339(reservation.created_at),
        )
