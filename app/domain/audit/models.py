"""The audit log: who did what to which key, from where. Entries outlive the key they describe."""

from __future__ import annotations

import uuid
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column


class AuditEvent(UUIDv7AuditBase):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_organization_created", "organization_id", "created_at"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # The staff member, when there was one (the CLI has none); their email is kept in actor_label.
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(320))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    action: Mapped[str] = mapped_column(String(40))
    # No foreign key: the entry must survive the deletion of what it describes.
    subject_id: Mapped[uuid.UUID] = mapped_column()
    subject_label: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
