"""Writing and reading the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import User
from app.domain.accounts.pages import AccountNotices
from app.domain.audit.models import AuditEvent

ACTION_LABELS = {
    "api_key.created": "Created API key",
    "api_key.revoked": "Revoked API key",
    "api_key.deleted": "Deleted API key",
    "api_key.updated": "Edited API key",
    "api_key.rolled": "Rolled API key",
    "account.sign_ins_slowed": "Sign-ins slowed after many failures",
    "webhook_endpoint.created": "Added webhook endpoint",
    "webhook_endpoint.secret_rolled": "Rolled webhook signing secret",
    "webhook_endpoint.enabled": "Enabled webhook endpoint",
    "webhook_endpoint.disabled": "Disabled webhook endpoint",
    "webhook_endpoint.deleted": "Removed webhook endpoint",
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a signed-in staff member with their address, or the command line."""

    label: str
    user_id: uuid.UUID | None = None
    ip_address: str | None = None


CLI_ACTOR = Actor(label="Command line")
# Who the audit log names for the notice that an account's sign-ins are slowed; the address is the attempt's.
THROTTLE_ACTOR_LABEL = "Sign-in throttle"


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
        *,
        auto_commit: bool = False,
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
            ),
            auto_commit=auto_commit,
        )

    async def for_subject(
        self, organization_id: uuid.UUID, subject_id: uuid.UUID, limit: int = 50
    ) -> Sequence[AuditEvent]:
        """The latest entries about one key or account, newest first."""
        return await self.get_many(
            AuditEvent.organization_id == organization_id,
            AuditEvent.subject_id == subject_id,
            LimitOffset(limit=limit, offset=0),
            order_by=[AuditEvent.created_at.desc(), AuditEvent.id.desc()],
        )

    async def latest(self, organization_id: uuid.UUID, limit: int = 200) -> Sequence[AuditEvent]:
        return await self.get_many(
            AuditEvent.organization_id == organization_id,
            LimitOffset(limit=limit, offset=0),
            order_by=[AuditEvent.created_at.desc(), AuditEvent.id.desc()],
        )


class AuditLogNotices(AccountNotices):
    """The accounts context's notices, as audit log entries."""

    async def sign_ins_slowed(
        self, session: AsyncSession, user: User, address: str, details: dict[str, Any]
    ) -> None:
        # Committed at once: the response (a failed sign-in) rolls the request's transaction back.
        await AuditLogService(session=session).record(
            user.organization_id,
            Actor(label=THROTTLE_ACTOR_LABEL, ip_address=address),
            "account.sign_ins_slowed",
            user.id,
            user.email,
            details=details,
            auto_commit=True,
        )
