"""What the Public Booking API takes and returns: the catalog, availability and reservations."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Final
from zoneinfo import ZoneInfo

import msgspec

from app.api.screening import NUL, NUL_DETAIL
from app.domain.api_keys.authentication import KeyView
from app.domain.booking.availability import Day
from app.domain.booking.models import Reservation, Service
from app.domain.booking.reads import PackageRow, ReservationView, ServiceRow
from app.domain.booking.reservations import NewReservation
from app.domain.errors import FieldError, InvalidFields

CUSTOMER_NAME_MAX_LENGTH: Final = 200
CUSTOMER_EMAIL_MAX_LENGTH: Final = 320
CUSTOMER_PHONE_MAX_LENGTH: Final = 32
NOTES_MAX_LENGTH: Final = 2000
CANCELLATION_REASON_MAX_LENGTH: Final = 500
PARTY_SIZE_MAX: Final = 1000
# Deliberately loose: one @, something on each side, a dot in the domain. Deliverability is the mailer's job.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# E.164 digits after dropping the usual separators.
_PHONE = re.compile(r"^\+?[0-9]{5,15}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def rfc3339(moment: datetime, zone: ZoneInfo | None = None) -> str:
    """`moment` as RFC 3339 with the offset of `zone` (UTC by default), to the second."""
    return moment.astimezone(zone or UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=65_536)
def _slot_time(moment: datetime, zone: ZoneInfo) -> str:
    """`rfc3339` for slot times: the same instants come back in every request for the same days."""
    return rfc3339(moment, zone)


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
    cancellation_notice_minutes: int
    """Customers can cancel through their `manage_url` until this long before the start."""

    @classmethod
    def of(cls, service: Service | ServiceRow) -> ServiceOut:
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
            cancellation_notice_minutes=service.cancellation_notice_minutes,
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
    def of(cls, package: PackageRow) -> PackageOut:
        return cls(
            id=package.id,
            name=package.name,
            description=package.description,
            service_ids=list(package.service_ids),
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
                            start=_slot_time(slot.start, zone),
                            end=_slot_time(slot.end, zone),
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
        str,
        msgspec.Meta(
            description=(
                "A slot start from GET /availability: an RFC 3339 date-time string with an offset (any offset). "
                "Numbers (Unix time) are refused."
            ),
            examples=["2030-03-04T10:00:00+00:00"],
        ),
    ]
    customer: CustomerIn
    party_size: Annotated[int, msgspec.Meta(ge=1, le=PARTY_SIZE_MAX)] = 1
    notes: Annotated[str, msgspec.Meta(max_length=NOTES_MAX_LENGTH)] | None = None

    def canonical(self) -> bytes:
        """The request as canonical JSON (sorted keys, defaults filled in, `start` as its parsed date-time
        would be written), for idempotency fingerprints."""
        body = msgspec.to_builtins(self)
        if (start := _as_datetime(self.start)) is not None:
            body["start"] = msgspec.to_builtins(start)
        return msgspec.json.encode(body, order="sorted")

    def validated(self) -> NewReservation:
        """The request, cleaned; what types alone cannot check raises InvalidFields naming every bad field."""
        errors = [
            FieldError(pointer, NUL_DETAIL)
            for pointer, value in (
                ("/customer/name", self.customer.name),
                ("/customer/email", self.customer.email),
                ("/customer/phone", self.customer.phone),
                ("/notes", self.notes),
            )
            if value is not None and NUL in value
        ]
        start = _parse_start(self.start)
        if isinstance(start, str):
            errors.append(FieldError("/start", start))
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
            raise InvalidFields(errors)
        assert isinstance(start, datetime)  # a str was an error, raised above
        return NewReservation(
            service_id=self.service_id,
            start=start,
            party_size=self.party_size,
            customer_name=name,
            customer_email=email,
            customer_phone=phone,
            notes=(self.notes or "").strip(),
        )


def _as_datetime(text: str) -> datetime | None:
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        return None


def _parse_start(text: str) -> datetime | str:
    """The instant an RFC 3339 `start` names, in UTC; or what is wrong with it."""
    start = _as_datetime(text)
    if start is None:
        return "Send start as an RFC 3339 date-time with an offset, e.g. 2030-03-04T10:00:00+00:00."
    if start.tzinfo is None:
        return "Include an offset, e.g. 2030-03-04T10:00:00+00:00."
    try:
        return start.astimezone(UTC)
    except OverflowError:  # within a few hours of 0001-01-01 or 9999-12-31: no service books there
        return "This start is outside the dates any service can book."


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
    """"confirmed" or "cancelled"."""
    service: ServiceRef
    start: str
    """RFC 3339, in UTC."""
    end: str
    party_size: int
    customer: CustomerOut
    created_at: str
    updated_at: str
    """When it last changed (booked or cancelled): the order of GET /reservations."""
    cancelled_at: str | None
    manage_url: str | None = None
    """The customer's own page to see and cancel this booking: send it to them, keep it secret otherwise.
    Null for reservations made before manage links existed."""

    @classmethod
    def of(cls, reservation: Reservation, service: Service, manage_url: str | None = None) -> ReservationOut:
        """A row just written (booking, cancel, list): shown exactly as the hot read path shows it."""
        view = ReservationView.of(reservation, service)
        return cls.of_view(view, manage_url)

    @classmethod
    def of_view(cls, view: ReservationView, manage_url: str | None = None) -> ReservationOut:
        return cls(
            id=view.public_id,
            status=view.status,
            service=ServiceRef(id=view.service_id, name=view.service_name),
            start=rfc3339(view.start_at),
            end=rfc3339(view.end_at),
            party_size=view.party_size,
            customer=CustomerOut(name=view.customer_name, email=view.customer_email),
            created_at=rfc3339(view.created_at),
            updated_at=view.updated_at.astimezone(UTC).isoformat(timespec="microseconds"),
            cancelled_at=None if view.cancelled_at is None else rfc3339(view.cancelled_at),
            manage_url=manage_url,
        )


class ReservationList(msgspec.Struct):
    data: list[ReservationOut]
    has_more: bool
    """More changes are there now: fetch `next_cursor` at once."""
    next_cursor: str | None
    """Resumes after the last item; given on the last page too, to ask later for the changes since."""


class CancelIn(msgspec.Struct):
    """Why the reservation is cancelled, optionally. Unknown fields are ignored."""

    reason: Annotated[str, msgspec.Meta(max_length=CANCELLATION_REASON_MAX_LENGTH)] | None = None

    def canonical(self) -> bytes:
        return msgspec.json.encode(msgspec.to_builtins(self), order="sorted")

    def cleaned_reason(self) -> str:
        if self.reason is not None and NUL in self.reason:
            raise InvalidFields([FieldError("/reason", NUL_DETAIL)])
        return (self.reason or "").strip()


class KeyOut(msgspec.Struct):
    """The API key making the request."""

    id: uuid.UUID
    name: str
    prefix: str
    """The first characters of the key's current secret, as the API Keys page shows them."""
    scopes: list[str]
    allowed_origins: list[str]
    """Empty: any origin may use the key."""
    rate_limit_per_minute: int
    expires_at: str | None
    """RFC 3339; null for a key that never expires."""
    secret_expires_at: str | None
    """Set when the request was made with the key's previous secret (the key was rolled): when that secret
    stops working (the `Sunset` header says the same). Null with the current secret."""

    @classmethod
    def of(cls, key: KeyView, secret_expires_at: datetime | None) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=key.scopes,
            allowed_origins=key.allowed_origins,
            rate_limit_per_minute=key.rate_limit_per_minute,
            expires_at=rfc3339(key.expires_at) if key.expires_at else None,
            secret_expires_at=rfc3339(secret_expires_at) if secret_expires_at else None,
        )
