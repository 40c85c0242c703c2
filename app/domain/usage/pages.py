"""Settings → DEVELOPER → API Keys → a key's usage: requests per hour or day over a chosen range, totals, top
routes, and the same per day as CSV.

The view is one partial (`usage/_view.html`) with the range as a query parameter: this handler renders it
alone for HTMX and inside the key's usage page otherwise (the key page loads it from there, `#key-usage-view`);
another page includes it with `usage_view_context`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.guards import requires_admin
from app.domain.accounts.models import User
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.pages import INDEX
from app.domain.api_keys.services import ApiKeyService, LeakedKeyAlertService
from app.domain.usage.chart import build_chart, outcome_class, outcome_label, render_svg
from app.domain.usage.services import (
    DEFAULT_RANGE,
    RANGES,
    UsageRange,
    daily_export,
    summarize,
    usage_csv_text,
)
from app.lib.clock import Clock

VIEW_ID = "usage-view"


def usage_range(name: str) -> UsageRange:
    if name not in RANGES:
        raise ValidationException(
            detail=f"Unknown usage range {name[:20]!r}: choose one of {', '.join(RANGES)}."
        )
    return RANGES[name]


async def usage_view_context(
    session: AsyncSession, api_key: ApiKey, time_zone: str, now: datetime, range_name: str, page_url: str
) -> dict[str, Any]:
    """What `usage/_view.html` needs; `page_url` is the page it sits in (its range links keep the range there)."""
    summary = await summarize(session, api_key, time_zone, now, usage_range(range_name))
    wide = build_chart(summary, "wide")
    charts = [wide, build_chart(summary, "narrow", tips=[slot.tip for slot in wide.slots])]
    return {
        "key": api_key,
        "now": now,
        "summary": summary,
        "charts": charts,
        "chart_svgs": [render_svg(chart, summary) for chart in charts],
        "ranges": RANGES,
        "outcome_label": outcome_label,
        "outcome_class": outcome_class,
        "page_url": page_url,
        "view_url": f"{INDEX}/{api_key.id}/usage",
        "view_id": VIEW_ID,
    }


class UsagePageController(Controller):
    path = INDEX
    guards = [requires_admin]
    include_in_schema = False
    dependencies = {"api_keys_service": create_service_provider(ApiKeyService)}

    @get("/{key_id:uuid}/usage", name="api_keys.usage")
    async def usage(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        key_id: FromPath[uuid.UUID],
        range_name: Annotated[str, QueryParameter(name="range", required=False)] = DEFAULT_RANGE,
    ) -> Template:
        """How a key is used over a range (24 hours, 7, 30 or 90 days): the view alone for HTMX, else the page."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        key_page = f"{INDEX}/{api_key.id}"
        # Loaded into the key page, the view's range links keep the range in the key page's own URL.
        in_key_page = request.htmx and urlsplit(request.htmx.current_url or "").path == key_page
        page_url = key_page if in_key_page else f"{key_page}/usage"
        context = await usage_view_context(
            db_session, api_key, user.organization.time_zone, clock(), range_name, page_url
        )
        if request.htmx and request.htmx.target == VIEW_ID:
            return HTMXTemplate(template_name="usage/_view.html", context=context)
        leak_alerts = await LeakedKeyAlertService(session=db_session).open_for_organization(
            user.organization_id, api_key.id
        )
        return Template("api_keys/usage.html", context={**context, "leak_alerts": leak_alerts})

    @get("/{key_id:uuid}/usage.csv", name="api_keys.usage_csv")
    async def usage_csv(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        """Every retained day of a key's usage per route, method and outcome, as CSV."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        body = usage_csv_text(await daily_export(db_session, api_key))
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="usage-{api_key.prefix}.csv"',
                "Cache-Control": "no-store",
            },
        )
