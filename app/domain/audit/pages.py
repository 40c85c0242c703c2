"""Settings → SECURITY → Audit Log (admins only)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from app.domain.accounts.guards import requires_admin
from app.domain.accounts.models import User
from app.domain.audit.services import ACTION_LABELS, AuditLogService


class AuditLogController(Controller):
    path = "/settings/audit-log"
    guards = [requires_admin]
    include_in_schema = False
    dependencies = {"audit_log_service": create_service_provider(AuditLogService)}

    @get("/", name="audit_log.index")
    async def index(
        self, request: HTMXRequest, audit_log_service: NamedDependency[AuditLogService]
    ) -> Template:
        user: User = request.user
        events = await audit_log_service.latest(user.organization_id)
        return Template(
            "audit/index.html",
            context={
                "events": events,
                "labels": ACTION_LABELS,
                "zone": ZoneInfo(user.organization.time_zone),
            },
        )
