"""Public Booking API v1: the catalog and availability (Read scope), and reservations (Write to create)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, post, route
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.guard import ANY_SCOPE, READ_METHODS, ApiRequest
from app.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from app.api.problems import GUARD_RESPONSES, documented_problem
from app.api.v1 import API_PREFIX
from app.api.v1.schemas import (
    AvailabilityOut,
    CancelIn,
    KeyOut,
    PackageList,
    PackageOut,
    ReservationIn,
    ReservationList,
    ReservationOut,
    ServiceList,
    ServiceOut,
)
from app.domain.api_keys.authentication import key_view
from app.domain.booking import (
    availability,
    cancellation,
    changes,
    idempotency,
    manage,
    reservations,
)
from app.domain.booking.models import Reservation, Service
from app.domain.booking.reads import BookingReads, PackageRow, ReservationView, ServiceRow
from app.domain.errors import FieldError, IdempotencyKeyRejected, InvalidFields
from app.lib.clock import Clock
from app.lib.pagination import PageRequest, decode_change_cursor, page_in

# Also part of every reservation's idempotency fingerprint: changing it would unmatch stored keys.
RESERVATIONS_PATH = f"{API_PREFIX}/reservations"
READ = {"scope": "read"}
WRITE = {"scope": "write"}
ANY = {"scope": ANY_SCOPE}

CREATE_RESPONSES = {
    **GUARD_RESPONSES,
    400: documented_problem(
        "`idempotency_key_missing` or `idempotency_key_invalid` (the `Idempotency-Key` header), "
        "or `bad_request` (the body is not JSON)."
    ),
    409: documented_problem(
        "`slot_unavailable` or `insufficient_capacity` (with `remaining_capacity`): fetch availability "
        "again. `idempotency_request_in_progress`: a claim of this key was left in flight less than 15 s ago "
        "(the claim's lease); retry after `Retry-After`. A request whose first is still running waits for it "
        "and replays its answer."
    ),
    422: documented_problem(
        "`validation_error` (with `errors[].pointer`), `slot_in_past`, `too_late_to_book` (minimum notice), "
        "`too_early_to_book` (booking horizon), `invalid_slot` (not a slot start, outside opening hours or "
        "closed), or `idempotency_key_reused` (the key was used for a different request)."
    ),
}
CANCEL_RESPONSES = {
    **GUARD_RESPONSES,
    400: CREATE_RESPONSES[400],
    404: documented_problem("`not_found`: no such reservation in your organization."),
    409: documented_problem(
        "`reservation_started`: it has started (or is over) and can no longer be cancelled. "
        "`idempotency_request_in_progress`: retry after `Retry-After`."
    ),
    422: documented_problem(
        "`validation_error` (with `errors[].pointer`), or `idempotency_key_reused` (the key was used for a "
        "different request)."
    ),
}
IDEMPOTENCY_KEY_DESCRIPTION = "Required. 1 to 255 printable ASCII characters, unique per request (a UUID)."


def _id(item: ServiceRow | PackageRow) -> uuid.UUID:
    return item.id


class CatalogController(Controller):
    tags = ["Catalog"]

    @route(
        "/services",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List services",
        description="Active services, in a stable order.",
    )
    async def list_services(
        self,
        request: ApiRequest,
        booking_reads: NamedDependency[BookingReads],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> ServiceList:
        page = page_in(await booking_reads.services(request.auth), PageRequest.of(limit, cursor), _id)
        return ServiceList(
            data=[ServiceOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @route(
        "/services/{service_id:str}",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="Get a service",
    )
    async def get_service(
        self,
        request: ApiRequest,
        booking_reads: NamedDependency[BookingReads],
        service_id: FromPath[str],
    ) -> ServiceOut:
        return ServiceOut.of(await booking_reads.service(request.auth, service_id))

    @route(
        "/packages",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List packages",
        description="Active prepaid bundles, in a stable order.",
    )
    async def list_packages(
        self,
        request: ApiRequest,
        booking_reads: NamedDependency[BookingReads],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> PackageList:
        page = page_in(await booking_reads.packages(request.auth), PageRequest.of(limit, cursor), _id)
        return PackageList(
            data=[PackageOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @route(
        "/packages/{package_id:str}",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="Get a package",
    )
    async def get_package(
        self,
        request: ApiRequest,
        booking_reads: NamedDependency[BookingReads],
        package_id: FromPath[str],
    ) -> PackageOut:
        return PackageOut.of(await booking_reads.package(request.auth, package_id))


class AvailabilityController(Controller):
    tags = ["Availability"]

    @route(
        "/availability",
        http_method=READ_METHODS,
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
        booking_reads: NamedDependency[BookingReads],
        clock: NamedDependency[Clock],
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
        now = clock()
        errors = []
        if window_problem := availability.check_date_window(start_date, end_date, now.date()):
            errors.append(FieldError(f"/{window_problem[0]}", window_problem[1]))
        elif range_problem := availability.check_date_range(start_date, end_date):
            errors.append(FieldError("/end_date", range_problem))
        zone = None
        if time_zone is not None and (zone := availability.time_zone_named(time_zone)) is None:
            errors.append(
                FieldError(
                    "/time_zone", f"Unknown time zone {time_zone!r}: use an IANA name like Europe/London."
                )
            )
        if errors:
            raise InvalidFields(errors)
        found = await reservations.find_availability(
            booking_reads, request.auth, service_id, start_date, end_date, zone, now=now
        )
        return AvailabilityOut.of(found.service.id, found.zone, found.days)


# Stored answers hold this instead of the manage link, whose token is never stored; `_stored` puts it back.
_MANAGE_LINK = ""


def _storable(reservation: ReservationView) -> str:
    link = _MANAGE_LINK if reservation.manage_token_hash else None
    return msgspec.json.encode(ReservationOut.of_view(reservation, link)).decode()


def _answer(reservation: ReservationView) -> reservations.Answer:
    """A new reservation as POST /reservations answers it, stored for the replays of its Idempotency-Key."""
    body = _storable(reservation)
    return reservations.Answer(201, body, {"Location": f"{RESERVATIONS_PATH}/{reservation.public_id}"})


def _cancel_answer(reservation: ReservationView) -> reservations.Answer:
    """A cancelled reservation as POST .../cancel answers it, stored for the replays of its Idempotency-Key."""
    return reservations.Answer(200, _storable(reservation), {})


def _key_of(header: str | None) -> str:
    key = idempotency.parse_key(header)
    if isinstance(key, idempotency.KeyProblem):
        raise IdempotencyKeyRejected(key.code, key.detail)
    return key


def _manage_url(request: ApiRequest, public_id: str) -> str:
    settings = request.app.state.settings
    base = settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return manage.url_for(base, settings.secret_key, public_id)


def _out(request: ApiRequest, reservation: Reservation, service: Service) -> ReservationOut:
    """A reservation as the API shows it, with the customer's manage link (never stored in an answer)."""
    url = _manage_url(request, reservation.public_id) if reservation.manage_token_hash else None
    return ReservationOut.of(reservation, service, url)


def _stored(request: ApiRequest, answer: reservations.Answer) -> ReservationOut:
    """A stored answer, with the manage link it was stored without."""
    out = msgspec.json.decode(answer.body, type=ReservationOut)
    if out.manage_url is None:
        return out
    return msgspec.structs.replace(out, manage_url=_manage_url(request, out.id))


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        since = None
    if since is not None and since.tzinfo is not None:
        try:
            return since.astimezone(UTC)
        except OverflowError:  # an offset that moves it past the calendar's first or last day
            pass
    detail = "Send an RFC 3339 date-time with an offset, e.g. 2030-03-04T10:00:00Z."
    raise InvalidFields([FieldError("/updated_since", detail)])


class ReservationsController(Controller):
    path = RESERVATIONS_PATH.removeprefix(API_PREFIX)
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
        booking_reads: NamedDependency[BookingReads],
        clock: NamedDependency[Clock],
        data: JSONBody[ReservationIn],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(name=idempotency.HEADER, required=False, description=IDEMPOTENCY_KEY_DESCRIPTION),
        ] = None,
    ) -> Response[ReservationOut]:
        key = _key_of(idempotency_key)
        booking = data.validated()
        fingerprint = idempotency.fingerprint("POST", RESERVATIONS_PATH, data.canonical())
        booked = await reservations.book(
            db_engine,
            booking_reads,
            clock,
            request.auth,
            key,
            fingerprint,
            booking,
            _answer,
            request.app.state.settings.secret_key,
        )
        headers = {"Location": booked.answer.headers.get("Location", "")}
        if booked.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(_stored(request, booked.answer), status_code=booked.answer.status, headers=headers)

    @route(
        "/",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        cache_control=CacheControlHeader(no_store=True),
        summary="List reservations by change",
        description=(
            "Your reservations in the order they last changed (booked or cancelled), the latest change last. "
            "Page with `next_cursor`; it is given on the last page too, so keep it and call again later for "
            "the changes since: no change is skipped or repeated, even while bookings are being made. Repeat "
            "the same filters with each cursor."
        ),
    )
    async def list_reservations(
        self,
        request: ApiRequest,
        db_session: NamedDependency[AsyncSession],
        updated_since: FromQuery[
            Annotated[
                str | None,
                QueryParameter(description="RFC 3339 date-time: only reservations changed at or after it."),
            ]
        ] = None,
        status: FromQuery[
            Annotated[
                Literal["confirmed", "cancelled"] | None, QueryParameter(description="Only this status.")
            ]
        ] = None,
        service_id: FromQuery[
            Annotated[uuid.UUID | None, QueryParameter(description="Only this service's reservations.")]
        ] = None,
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> ReservationList:
        filters = changes.ChangeFilter(
            updated_since=_parse_since(updated_since), status=status, service_id=service_id
        )
        page = await changes.list_changes(
            db_session,
            request.auth.organization_id,
            filters,
            limit=limit,
            after=decode_change_cursor(cursor) if cursor else None,
        )
        return ReservationList(
            data=[_out(request, reservation, service) for reservation, service in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @post(
        "/{reservation_id:str}/cancel",
        opt=WRITE,
        status_code=200,
        responses=CANCEL_RESPONSES,
        response_headers=[
            ResponseHeader(
                name="Idempotent-Replayed",
                documentation_only=True,
                description="`true` when this is the stored answer to an earlier request with the same key.",
            ),
        ],
        summary="Cancel a reservation",
        description=(
            "Cancels a reservation that has not started; its places are free at once. Send an "
            "`Idempotency-Key` as when booking: a retry with the same key gets the first answer again. "
            "Cancelling a cancelled reservation answers it as it is."
        ),
    )
    async def cancel_reservation(
        self,
        request: ApiRequest,
        db_engine: NamedDependency[AsyncEngine],
        clock: NamedDependency[Clock],
        reservation_id: FromPath[str],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(name=idempotency.HEADER, required=False, description=IDEMPOTENCY_KEY_DESCRIPTION),
        ] = None,
        data: JSONBody[CancelIn | None] = None,
    ) -> Response[ReservationOut]:
        key = _key_of(idempotency_key)
        body = data or CancelIn()
        reason = body.cleaned_reason()
        path = f"{RESERVATIONS_PATH}/{reservation_id}/cancel"
        keyed = cancellation.Keyed(
            request.auth.key_id, key, idempotency.fingerprint("POST", path, body.canonical())
        )
        done = await cancellation.cancel(
            db_engine,
            clock,
            request.auth.organization_id,
            reservation_id,
            reason=reason,
            keyed=keyed,
            render=_cancel_answer,
        )
        assert done.answer is not None  # rendered: `render` was given
        headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
        return Response(_stored(request, done.answer), status_code=done.answer.status, headers=headers)

    @route(
        "/{reservation_id:str}",
        http_method=READ_METHODS,
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="Get a reservation",
    )
    async def get_reservation(
        self,
        request: ApiRequest,
        booking_reads: NamedDependency[BookingReads],
        reservation_id: FromPath[str],
    ) -> ReservationOut:
        view = await booking_reads.reservation(request.auth.organization_id, reservation_id)
        url = _manage_url(request, view.public_id) if view.manage_token_hash else None
        return ReservationOut.of_view(view, url)


class KeyController(Controller):
    tags = ["Key"]

    @route(
        "/key",
        http_method=READ_METHODS,
        opt=ANY,
        responses=GUARD_RESPONSES,
        summary="The calling API key",
        description=(
            "The key the request was made with: its id, name, prefix, scopes, allowed origins, rate limit and "
            "expiry, and, when called with the key's previous secret (the key was rolled), when that secret "
            "stops working. Any key may call it, whatever its scopes; it counts toward the key's rate limit "
            "like any request."
        ),
    )
    async def get_key(self, request: ApiRequest, db_engine: NamedDependency[AsyncEngine]) -> KeyOut:
        return KeyOut.of(
            await key_view(db_engine, request.auth.key_id), request.auth.previous_secret_expires_at
        )
