"""Booking: the catalog (services, packages), opening hours and closures, reservations and idempotency records."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from advanced_alchemy.base import UUIDv7AuditBase, orm_registry
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.lib.ids import random_base62

RESERVATION_ID_PREFIX = "res_"
RESERVATION_ID_RANDOM_LENGTH = 24  # base62: 142 bits, unguessable

package_services = Table(
    "package_services",
    orm_registry.metadata,
    Column("package_id", ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True),
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)


class Service(UUIDv7AuditBase):
    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        CheckConstraint("capacity >= 1", name="capacity_positive"),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
        CheckConstraint("slot_interval_minutes > 0", name="slot_interval_positive"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    # Integer minor units (pence, cents) and an ISO 4217 code: no floating-point money.
    price_amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # 1 for an appointment, more for a class.
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    slot_interval_minutes: Mapped[int] = mapped_column(Integer)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    booking_horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # Customers may cancel through their manage link until this long before the start; later, they call.
    cancellation_notice_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60, server_default="1440")


class Package(UUIDv7AuditBase):
    __tablename__ = "packages"
    __table_args__ = (
        CheckConstraint("session_count > 0", name="session_count_positive"),
        CheckConstraint("validity_days > 0", name="validity_positive"),
        CheckConstraint("price_amount >= 0", name="price_not_negative"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    session_count: Mapped[int] = mapped_column(Integer)
    validity_days: Mapped[int] = mapped_column(Integer)
    price_amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    services: Mapped[list[Service]] = relationship(
        secondary=package_services, lazy="selectin", order_by=Service.id
    )


class OpeningHours(UUIDv7AuditBase):
    """One opening range on one weekday, in the organization's time zone; several a day make a break."""

    __tablename__ = "opening_hours"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("opens_at < closes_at", name="opens_before_closing"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)
    """0 is Monday, 6 is Sunday."""
    opens_at: Mapped[time] = mapped_column(Time)
    closes_at: Mapped[time] = mapped_column(Time)


class Closure(UUIDv7AuditBase):
    """Dates the business is closed (holidays), inclusive, in the organization's time zone."""

    __tablename__ = "closures"
    __table_args__ = (CheckConstraint("start_date <= end_date", name="dates_in_order"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")


def new_reservation_id() -> str:
    return RESERVATION_ID_PREFIX + random_base62(RESERVATION_ID_RANDOM_LENGTH)


class Reservation(UUIDv7AuditBase):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("party_size >= 1", name="party_size_positive"),
        CheckConstraint("start_at < end_at", name="starts_before_end"),
        # One service's reservations by time.
        Index("ix_reservations_service_id_start_at", "service_id", "start_at"),
        # The availability and re-check queries: one service's confirmed reservations ending after a time,
        # covered (the other index would read the service's whole history before the window).
        Index(
            "ix_reservations_service_id_status_end_at",
            "service_id",
            "status",
            "end_at",
            "start_at",
            "party_size",
        ),
        # The staff page: one organization's reservations by time.
        Index("ix_reservations_organization_id_start_at", "organization_id", "start_at"),
        # GET /reservations: one organization's changes in order (the list's keyset cursor).
        Index("ix_reservations_organization_id_updated_at_id", "organization_id", "updated_at", "id"),
    )

    # What clients see and quote; the uuid stays internal.
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_reservation_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id"))
    # Keys can be deleted; the reservations they made stay.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    start_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    end_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    party_size: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    cancellation_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # SHA-256 of the customer's manage-link token (app.domain.booking.manage); never the token itself.
    manage_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)


class IdempotencyRecord(UUIDv7AuditBase):
    """One Idempotency-Key of one API key: claimed while its request runs, then its response, for replays."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("api_key_id", "idempotency_key"),)

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    """"in_flight" while its request runs, then "completed"."""
    # Fencing: only the request holding this token may complete the record, even after a takeover.
    claim_token: Mapped[str] = mapped_column(String(32))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # In flight: the end of the claim's lease. Completed: the end of its retention.
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
