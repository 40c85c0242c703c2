"""Public Booking API v1: the catalog and availability (Read scope), and reservations (Write to create)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.guard import ApiRequest
from app.api.pagination import DEFAULT_LIMIT, Cursor, Limit, PageRequest
from app.api.problems import GUARD_RESPONSES, ApiProblem, FieldError, documented_problem
from app.domain.booking import availability, idempotency, reservations, services
from app.domain.booking.models import Package, Service
from app.domain.booking.schemas import (
    AvailabilityOut,
    PackageList,
    PackageOut,
    ReservationIn,
    ReservationOut,
    ServiceList,
    ServiceOut,
)

READ = {"scope": "read"}
WRITE = {"scope": "write"}

CREATE_RESPONSES = {
    **GUARD_RESPONSES,
    400: documented_problem(
        "`idempotency_key_missing` or `idempotency_key_invalid` (the `Idempotency-Key` header), "
        "or `bad_request` (the body is not JSON)."
    ),
    409: documented_problem(
        "`slot_unavailable` or `insufficient_capacity` (with `remaining_capacity`): fetch availability "
        "again. `idempotency_request_in_progress`: the first request with this key is still running."
    ),
    422: documented_problem(
        "`validation_error` (with `errors[].pointer`), `slot_in_past`, `too_late_to_book` (minimum notice), "
        "`too_early_to_book` (booking horizon), `invalid_slot` (not a slot start, outside opening hours or "
        "closed), or `idempotency_key_reused` (the key was used for a different request)."
    ),
}


class CatalogController(Controller):
    tags = ["Catalog"]

    @get(
        "/services",
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List services",
        description="Active services, in a stable order.",
    )
    async def list_services(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> ServiceList:
        page = await services.list_active(
            db_session, Service, request.auth.organization_id, PageRequest.of(limit, cursor)
        )
        return ServiceList(
            data=[ServiceOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @get("/services/{service_id:str}", opt=READ, responses=GUARD_RESPONSES, summary="Get a service")
    async def get_service(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        service_id: FromPath[str],
    ) -> ServiceOut:
        return ServiceOut.of(
            await services.get_active(db_session, Service, request.auth.organization_id, service_id)
        )

    @get(
        "/packages",
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List packages",
        description="Active prepaid bundles, in a stable order.",
    )
    async def list_packages(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> PackageList:
        page = await services.list_active(
            db_session, Package, request.auth.organization_id, PageRequest.of(limit, cursor)
        )
        return PackageList(
            data=[PackageOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @get("/packages/{package_id:str}", opt=READ, responses=GUARD_RESPONSES, summary="Get a package")
    async def get_package(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        package_id: FromPath[str],
    ) -> PackageOut:
        return PackageOut.of(
            await services.get_active(db_session, Package, request.auth.organization_id, package_id)
        )


class AvailabilityController(Controller):
    tags = ["Availability"]

    @get(
        "/availability",
        opt=READ,
        responses=GUARD_RESPONSES,
        cache_control=CacheControlHeader(no_store=True),
        summary="List free slots",
        description=(
            "Free slots of one service, day by day in `time_zone`, with times in that zone's offset. Slots "
            "follow the opening hours, stepped by the service's slot interval; the past, the minimum notice, "
            "dates beyond the booking horizon, closures and full slots are left out. In a spring-forward gap "
            "there is no slot; the repeated autumn hour has two, at distinct instants."
        ),
    )
    async def list_availability(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        service_id: FromQuery[Annotated[str, QueryParameter(description="A service id.")]],
        start_date: FromQuery[Annotated[date, QueryParameter(description="First day, `YYYY-MM-DD`.")]],
        end_date: FromQuery[
            Annotated[
                date,
                QueryParameter(
                    description=f"Last day, included; at most {availability.MAX_RANGE_DAYS} days in all."
                ),
            ]
        ],
        time_zone: FromQuery[
            Annotated[
                str | None,
                QueryParameter(
                    description="IANA time zone to group days and show times in; the business's by default."
                ),
            ]
        ] = None,
    ) -> AvailabilityOut:
        errors = []
        if range_problem := availability.check_date_range(start_date, end_date):
            errors.append(FieldError("/end_date", range_problem))
        zone = None
        if time_zone is not None and (zone := availability.time_zone_named(time_zone)) is None:
            errors.append(
                FieldError(
                    "/time_zone", f"Unknown time zone {time_zone!r}: use an IANA name like Europe/London."
                )
            )
        if errors:
            raise ApiProblem(422, "validation_error", "The request has invalid fields.", errors=errors)
        found = await reservations.find_availability(
            db_session, request.auth, service_id, start_date, end_date, zone
        )
        return AvailabilityOut.of(found.service.id, found.zone, found.days)


class ReservationsController(Controller):
    path = reservations.RESERVATIONS_PATH.removeprefix("/api/v1")
    tags = ["Reservations"]

    @post(
        "/",
        opt=WRITE,
        status_code=201,
        responses=CREATE_RESPONSES,
        response_headers=[
            ResponseHeader(name="Location", documentation_only=True, description="The new reservation."),
            ResponseHeader(
                name="Idempotent-Replayed",
                documentation_only=True,
                description="`true` when this is the stored answer to an earlier request with the same key.",
            ),
        ],
        summary="Book a slot",
        description=(
            "Books `start` (a slot start from GET /availability) for `party_size` people. Send a unique "
            "`Idempotency-Key` per booking and reuse it when retrying: for 24 hours the same key and body "
            "get the first answer again (with `Idempotent-Replayed: true`) instead of a second booking. "
            "Only successful bookings are remembered; after an error, retrying with the same key runs again."
        ),
    )
    async def create_reservation(
        self,
        request: ApiRequest,
        db_engine: NamedDependency[AsyncEngine],
        data: JSONBody[ReservationIn],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name=idempotency.HEADER,
                required=False,
                description="Required. 1 to 255 printable ASCII characters, unique per booking (a UUID).",
            ),
        ] = None,
    ) -> Response[ReservationOut]:
        key = idempotency.parse_key(idempotency_key)
        if isinstance(key, idempotency.KeyProblem):
            raise ApiProblem(400, key.code, key.detail)
        booking = data.validated()
        fingerprint = idempotency.fingerprint("POST", reservations.RESERVATIONS_PATH, data.canonical())
        booked = await reservations.book(db_engine, request.auth, key, fingerprint, booking)
        headers = {"Location": booked.location}
        if booked.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(booked.reservation, status_code=booked.status_code, headers=headers)

    @get("/{reservation_id:str}", opt=READ, responses=GUARD_RESPONSES, summary="Get a reservation")
    async def get_reservation(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        reservation_id: FromPath[str],
    ) -> ReservationOut:
        reservation, service = await reservations.get_reservation(
            db_session, request.auth.organization_id, reservation_id
        )
        return ReservationOut.of(reservation, service)
