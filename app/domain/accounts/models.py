"""Organizations (the businesses) and their staff."""

from __future__ import annotations

import uuid
from typing import Literal

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

Role = Literal["admin", "staff"]
ROLES: tuple[Role, ...] = ("admin", "staff")


class Organization(UUIDv7AuditBase):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    # Moved by database triggers (migration 0013) on every write to the organization's services, packages,
    # opening hours and closures; never written by the app. The API key lookup reads it with the key.
    catalog_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class User(UUIDv7AuditBase):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    organization: Mapped[Organization] = relationship(lazy="joined", innerjoin=True)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
