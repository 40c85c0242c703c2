"""Writing and reading the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService

from app.domain.audit.models import AuditEvent

ACTION_LABELS = {
    "api_key.created": "Created API key",
    "api_key.revoked": "Revoked API key",
    "api_key.deleted": "Deleted API key",
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a signed-in staff member with their address, or the command line."""

    label: str
    user_id: uuid.UUID | None = None
    ip_address: str | None = None


CLI_ACTOR = Actor(label="Command line")


class AuditLogService(SQLAlchemyAsyncRepositoryService[AuditEvent]):
    class Repo(SQLAlchemyAsyncRepository[AuditEvent]):
        model_type = AuditEvent

    repository_type = Repo

    async def record(
        self,
        organization_id: uuid.UUID,
        actor: Actor,
        action: str,
        subject_id: uuid.UUID,
        subject_label: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return await self.create(
            AuditEvent(
                organization_id=organization_id,
                actor_user_id=actor.user_id,
                actor_label=actor.label,
                ip_address=actor.ip_address,
                action=action,
                subject_id=subject_id,
                subject_label=subject_label,
                details=details or {},
            )
        )

    async def latest(self, organization_id: uuid.UUID, limit: int = 200) -> Sequence[AuditEvent]:
        return await self.get_many(
            AuditEvent.organization_id == organization_id,
            LimitOffset(limit=limit, offset=0),
            order_by=[AuditEvent.created_at.desc(), AuditEvent.id.desc()],
        )
