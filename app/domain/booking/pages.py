"""Bookings → Reservations: the staff's list of reservations, filtered by date and service, and cancelling one.

One handler renders the full page, or only the table body for the HTMX filter form; cancelling answers HTMX
with the row, and a plain form with the page again.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.accounts.models import User
from app.domain.booking import cancellation, manage, reservations, services
from app.domain.errors import CancellationRefused, NotFound
from app.lib.clock import Clock
from app.lib.db import OWN_WRITE_TRANSACTION
from app.lib.toast import toast

INDEX = "/bookings/reservations"
TABLE_BODY_ID = "reservations-body"
# Dates the filter accepts: far wider than any booking, far from the calendar's ends.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)


def _parse_filters(day_text: str, service_text: str) -> tuple[date | None, uuid.UUID | None, dict[str, str]]:
    errors: dict[str, str] = {}
    day = service_id = None
    if day_text:
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            errors["date"] = "Enter a date as YYYY-MM-DD."
        else:
            if not FIRST_DAY <= day <= LAST_DAY:  # the day's bounds in the business's zone must exist
                errors["date"] = f"Enter a date between {FIRST_DAY} and {LAST_DAY}."
                day = None
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
        clock: NamedDependency[Clock],
        day_text: FromQuery[Annotated[str, QueryParameter(name="date")]] = "",
        service_text: FromQuery[Annotated[str, QueryParameter(name="service")]] = "",
    ) -> Template:
        user: User = request.user
        zone = ZoneInfo(user.organization.time_zone)
        day, service_id, errors = _parse_filters(day_text.strip(), service_text.strip())
        now = clock()
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
            "now": now,
            "notice": None,
        }
        status_code = 422 if errors else 200
        htmx = request.htmx
        if htmx and htmx.target == TABLE_BODY_ID and not htmx.history_restore_request:
            return HTMXTemplate(
                template_name="bookings/_table_body.html", context=context, status_code=status_code
            )
        context["services"] = await services.all_services(db_session, user.organization_id)
        return Template("bookings/reservations.html", context=context, status_code=status_code)

    @get("/reservations/{reservation_id:str}", name="bookings.reservation")
    async def reservation(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        reservation_id: FromPath[str],
    ) -> Template:
        """One reservation with everything the customer gave: phone and notes too; and, while it is upcoming,
        the question before cancelling it (where the table's Cancel leads without JavaScript)."""
        user: User = request.user
        try:
            row = await reservations.staff_row(db_session, user.organization_id, reservation_id)
        except NotFound:
            raise NotFoundException("No such reservation.") from None
        return Template(
            "bookings/reservation.html",
            context={"row": row, "zone": ZoneInfo(user.organization.time_zone), "now": clock()},
        )

    @post(
        "/reservations/{reservation_id:str}/cancel",
        name="bookings.cancel",
        status_code=200,
        opt={OWN_WRITE_TRANSACTION: True},
    )
    async def cancel(
        self,
        request: HTMXRequest,
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        reservation_id: FromPath[str],
    ) -> Template | Redirect:
        """Any staff member may cancel an upcoming reservation; its places are free at once."""
        user: User = request.user
        try:
            # Read first: the request's session may hold a snapshot from before the cancel (SQLite).
            row = await reservations.staff_row(db_session, user.organization_id, reservation_id)
        except NotFound:
            raise NotFoundException("No such reservation.") from None
        refusal = None
        try:
            done = await cancellation.cancel(
                db_engine, clock, user.organization_id, reservation_id, reason="Cancelled by staff"
            )
        except CancellationRefused as refused:
            refusal = refused.detail
        else:
            assert done.reservation is not None  # not a replay: no Idempotency-Key here
            row = dataclasses.replace(row, reservation=done.reservation)
        if request.htmx:
            context = {"row": row, "zone": ZoneInfo(user.organization.time_zone), "now": clock()}
            message = refusal or f"Reservation of {row.reservation.customer_name} cancelled"
            return HTMXTemplate(
                template_name="bookings/_row.html",
                context=context,
                headers=toast(message),  # 200 even when refused: htmx swaps no 4xx, and the row shows why
            )
        if refusal is None:
            return Redirect(INDEX, status_code=303)
        zone = ZoneInfo(user.organization.time_zone)
        now = clock()
        listing = await reservations.list_for_staff(db_session, user.organization_id, zone, now=now)
        context = {
            "listing": listing,
            "errors": {},
            "filters": {"date": "", "service": ""},
            "zone": zone,
            "now": now,
            "notice": refusal,
            "services": await services.all_services(db_session, user.organization_id),
        }
        return Template("bookings/reservations.html", context=context, status_code=409)


# --- The customer's manage page ---------------------------------------------------------------------

# The page's address carries its token: keep it out of caches. (Cross-origin Referers carry the origin only:
# the app's Referrer-Policy.)
_MANAGE_HEADERS = {"Cache-Control": "no-store"}


def _manage_page(
    managed: manage.Managed,
    token: str,
    now: datetime,
    *,
    error: str | None = None,
    cancelled_now: bool = False,
    status_code: int = 200,
) -> Template:
    deadline = manage.cancel_deadline(managed.reservation, managed.service)
    context = {
        "managed": managed,
        "token": token,
        "zone": ZoneInfo(managed.organization.time_zone),
        "now": now,
        "deadline": deadline,
        "can_cancel": managed.reservation.status == reservations.CONFIRMED and deadline > now,
        "error": error,
        "cancelled_now": cancelled_now,
    }
    return Template(
        "manage/reservation.html", context=context, status_code=status_code, headers=_MANAGE_HEADERS
    )


async def _managed(session: AsyncSession, token: str) -> manage.Managed:
    managed = await manage.find(session, token.strip())
    if managed is None:
        raise NotFoundException("This link is not valid: check that it was copied whole.")
    return managed


class ManageController(Controller):
    """The customer's own page for one booking, reached by the link in its confirmation: no sign-in."""

    path = manage.PATH
    include_in_schema = False

    @get("/", name="manage.show")
    async def show(
        self,
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        token: FromQuery[str] = "",
        cancelled: FromQuery[bool] = False,
    ) -> Template:
        managed = await _managed(db_session, token)
        return _manage_page(managed, token.strip(), clock(), cancelled_now=cancelled)

    @post("/cancel", name="manage.cancel", status_code=200)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
    ) -> Template | Redirect:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        managed = await _managed(db_session, token)
        try:
            await cancellation.cancel(
                db_engine,
                clock,
                managed.organization.id,
                managed.reservation.public_id,
                reason="Cancelled by the customer",
                by_customer=True,
            )
        except CancellationRefused as refused:
            return _manage_page(managed, token, clock(), error=refused.detail, status_code=409)
        return Redirect(f"{manage.PATH}?{urlencode({'token': token, 'cancelled': 'true'})}", status_code=303)
