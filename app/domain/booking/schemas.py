"""What the Public Booking API returns for the catalog."""

from __future__ import annotations

import uuid

import msgspec

from app.domain.booking.models import Package, Service


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
