"""The booking catalog: services (appointments and classes) and packages (prepaid bundles)."""

from __future__ import annotations

import uuid

from advanced_alchemy.base import UUIDv7AuditBase, orm_registry
from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
