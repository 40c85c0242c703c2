"""Bookings → Reservations: the staff's list of reservations, filtered by date and service.

One handler renders the full page, or only the table body for the HTMX filter form.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import User
from app.domain.booking import reservations, services

INDEX = "/bookings/reservations"
TABLE_BODY_ID = "reservations-body"


def _parse_filters(day_text: str, service_text: str) -> tuple[date | None, uuid.UUID | None, dict[str, str]]:
    errors: dict[str, str] = {}
    day = service_id = None
    if day_text:
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            errors["date"] = "Enter a date as YYYY-MM-DD."
    if service_text:
        try:
            service_id = uuid.UUID(service_text)
        except ValueError:
            errors["service"] = "Choose a service from the list."
    return day, service_id, errors


class BookingsController(Controller):
    path = "/bookings"
    include_in_schema = False

    @get("/", name="bookings.index")
    async def index(self) -> Redirect:
        return Redirect(INDEX)

    @get("/reservations", name="bookings.reservations")
    async def reservations(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        day_text: FromQuery[Annotated[str, QueryParameter(name="date")]] = "",
        service_text: FromQuery[Annotated[str, QueryParameter(name="service")]] = "",
    ) -> Template:
        user: User = request.user
        zone = ZoneInfo(user.organization.time_zone)
        day, service_id, errors = _parse_filters(day_text.strip(), service_text.strip())
        now = datetime.now(UTC)
        listing = (
            None
            if errors
            else await reservations.list_for_staff(
                db_session, user.organization_id, zone, day=day, service_id=service_id, now=now
            )
        )
        context: dict[str, Any] = {
            "listing": listing,
            "errors": errors,
            "filters": {"date": day_text, "service": service_text},
            "zone": zone,
        }
        status_code = 422 if errors else 200
        htmx = request.htmx
        if htmx and htmx.target == TABLE_BODY_ID and not htmx.history_restore_request:
            return HTMXTemplate(
                template_name="bookings/_table_body.html", context=context, status_code=status_code
            )
        context["services"] = await services.all_services(db_session, user.organization_id)
        return Template("bookings/reservations.html", context=context, status_code=status_code)
