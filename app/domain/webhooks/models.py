"""Webhook endpoints, the outbox of events, each event's delivery to each endpoint, and every attempt.

A signing secret is never stored, nor a hash of it: it is derived from SECRET_KEY and the endpoint's random
`secret_salt` (see signing.py), so rolling it is a new salt.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class WebhookEndpoint(UUIDv7AuditBase):
    __tablename__ = "webhook_endpoints"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_salt: Mapped[str] = mapped_column(String(32))
    # Since when every delivery has failed (None: the last one succeeded); 3 days of it disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    disabled_reason: Mapped[str] = mapped_column(String(200), default="")


class WebhookEvent(UUIDv7AuditBase):
    """One event, written in the transaction of the change it reports: the outbox."""

    __tablename__ = "webhook_events"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    """The JSON body every endpoint receives, exactly as signed."""


class WebhookDelivery(UUIDv7AuditBase):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        # The worker's question: what is due now?
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """"pending" until "delivered", or "failed" (not retryable, or 24 hours of retries)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # A worker holds the delivery until then; one that dies mid-attempt lets another retry after it.
    leased_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))


class WebhookAttempt(UUIDv7AuditBase):
    """One try at one delivery: the endpoint's delivery log."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_id_created_at", "endpoint_id", "created_at"),)

    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(String(500), default="")
    duration_ms: Mapped[int] = mapped_column(Integer)
