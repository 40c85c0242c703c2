"""API keys. Only the SHA-256 hash of a key is stored; the full key never is."""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column


class ApiKey(UUIDv7AuditBase):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("rate_limit_per_minute BETWEEN 1 AND 1000", name="rate_limit_range"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    allowed_origins: Mapped[list[str]] = mapped_column(JSON)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The secret a roll replaced, working until previous_expires_at (the grace): at most one per key, and,
    # like the current one, only its hash. Kept after its end, so a late caller is told it was rolled.
    previous_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    previous_prefix: Mapped[str | None] = mapped_column(String(16))
    previous_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))


class LeakedKeyAlert(UUIDv7AuditBase):
    """A key revoked because it was found in public: a banner for the organization's admins until one of
    them dismisses it."""

    __tablename__ = "leaked_key_alerts"
    __table_args__ = (
        Index("ix_leaked_key_alerts_organization_dismissed", "organization_id", "dismissed_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # The alert outlives the key (a deleted key's banner still says what happened); its label is kept.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    key_label: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    dismissed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
