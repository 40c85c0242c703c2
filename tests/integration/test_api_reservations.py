"""POST /api/v1/reservations and GET /api/v1/reservations/{id}: booking, its refusals, and idempotent retries."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text, update

from app.api.v1.schemas import ReservationIn
from app.domain.api_keys.models import ApiKey
from app.domain.booking import idempotency
from app.domain.booking.models import IdempotencyRecord, Reservation, Service
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.api_helpers import (
    add_services,
    assert_problem,
    bearer,
    key_id_of,
    make_key,
    service_row,
)
from tests.booking_helpers import (
    add_closure,
    add_reservation,
    bookable_service,
    booking,
    days_ahead,
    idempotency_records,
    local,
    reservation_count,
    seats_taken,
)
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


async def post(client: Client, key: str, body: Any, idempotency_key: str | None = "key-1") -> Any:
    headers = bearer(key) | ({"Idempotency-Key": idempotency_key} if idempotency_key is not None else {})
    if isinstance(body, bytes):
        return await client.post(
            RESERVATIONS, content=body, headers=headers | {"Content-Type": "application/json"}
        )
    return await client.post(RESERVATIONS, json=body, headers=headers)


async def assert_nothing_written(app: Litestar) -> None:
    assert await reservation_count(app) == 0
    assert await idempotency_records(app) == []


async def test_booking_a_slot(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:30")
    before = datetime.now(UTC)
    response = await post(client, key, booking(service, start))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("res_") and len(body["id"]) >= 26 and body["id"][4:].isalnum()
    assert response.headers["location"] == f"{RESERVATIONS}/{body['id']}"
    assert "idempotent-replayed" not in response.headers
    assert body == {
        "id": body["id"],
        "status": "confirmed",
        "service": {"id": str(service.id), "name": "Massage"},
        "start": start.astimezone(UTC).isoformat(),
        "end": (start + timedelta(hours=1)).astimezone(UTC).isoformat(),
        "party_size": 1,
        "customer": {"name": "Grace Hopper", "email": "grace@example.com"},
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "cancelled_at": None,
        "manage_url": body["manage_url"],
    }
    assert body["manage_url"].startswith("http://testserver.local/manage?token=")
    assert datetime.fromisoformat(body["updated_at"]) >= datetime.fromisoformat(body["created_at"])
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)

    fetched = await client.get(response.headers["location"], headers=bearer(key))
    assert fetched.status_code == 200 and fetched.json() == body
    async with transaction(alchemy_of(app)) as session:
        stored = await session.scalar(select(Reservation))
    assert stored is not None
    assert (stored.customer_phone, stored.notes, stored.api_key_id) == (
        "+44 1632 960123",
        "First visit",
        await key_id_of(app, key),
    )
    # Booked means gone from availability.
    day = days_ahead(2)
    listed = (
        await client.get(
            "/api/v1/availability",
            params={
                "service_id": str(service.id),
                "start_date": day.isoformat(),
                "end_date": day.isoformat(),
            },
            headers=bearer(key),
        )
    ).json()
    assert start.isoformat() not in [slot["start"] for slot in listed["days"][0]["slots"]]


async def test_the_manage_link_is_on_the_public_url_whatever_host_the_request_names(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    forged = {"Host": "attacker.example"}
    # Unset, the link is on the request's own host, as its sender named it.
    from_host = await client.post(
        RESERVATIONS,
        json=booking(service, local(days_ahead(2), "10:30")),
        headers={**bearer(key), **forged, "Idempotency-Key": "k-host"},
    )
    assert from_host.json()["manage_url"].startswith("http://attacker.example/manage?token=")

    app.state.settings = dataclasses.replace(app.state.settings, public_url="https://book.example.com")
    response = await client.post(
        RESERVATIONS,
        json=booking(service, local(days_ahead(2), "12:30")),
        headers={**bearer(key), **forged, "Idempotency-Key": "k-public"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["manage_url"].startswith("https://book.example.com/manage?token=")
    fetched = await client.get(response.headers["location"], headers={**bearer(key), **forged})
    assert fetched.json()["manage_url"] == response.json()["manage_url"]


async def test_any_offset_names_the_same_slot(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "11:00")
    response = await post(
        client, key, booking(service, start.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    )
    assert response.status_code == 201, response.text
    again = await post(
        client, key, booking(service, start.astimezone(timezone(timedelta(hours=-3)))), "key-2"
    )
    assert_problem(again, 409, "slot_unavailable")


async def test_a_reservation_is_only_visible_to_its_organization(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = (await post(client, key, booking(service, local(days_ahead(2), "10:00")))).json()
    theirs = await make_key(app, other_studio)
    assert_problem(
        await client.get(f"{RESERVATIONS}/{created['id']}", headers=bearer(theirs)), 404, "not_found"
    )
    for unknown in ("res_" + "x" * 24, "nope", str(uuid.uuid4())):
        assert_problem(await client.get(f"{RESERVATIONS}/{unknown}", headers=bearer(key)), 404, "not_found")
    reader = await make_key(app, studio, scopes=("read",))
    assert (await client.get(f"{RESERVATIONS}/{created['id']}", headers=bearer(reader))).status_code == 200
    assert_problem(
        await post(client, reader, booking(service, local(days_ahead(2), "12:00"))), 403, "insufficient_scope"
    )


# --- Refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "code"),
    [
        (lambda: local(days_ahead(-1), "10:00"), "slot_in_past"),
        (lambda: local(days_ahead(1), "10:00"), "too_late_to_book"),  # the notice is three days
        (lambda: local(days_ahead(20), "10:00"), "too_early_to_book"),  # the horizon is two weeks
        (lambda: local(days_ahead(5), "10:10"), "invalid_slot"),  # off the half-hour grid
        (lambda: local(days_ahead(5), "16:30"), "invalid_slot"),  # would end after closing
        (lambda: local(days_ahead(5), "20:00"), "invalid_slot"),  # outside opening hours
        (lambda: local(days_ahead(8), "10:00"), "invalid_slot"),  # closed that day
    ],
)
async def test_booking_rules_are_422(
    client: Client, app: Litestar, studio: Staff, when: Any, code: str
) -> None:
    service = await bookable_service(app, studio, min_notice_minutes=3 * 24 * 60, booking_horizon_days=14)
    await add_closure(app, studio, days_ahead(8), days_ahead(8))
    key = await make_key(app, studio)
    body = assert_problem(await post(client, key, booking(service, when())), 422, code)
    if code == "invalid_slot" and when().date() == days_ahead(8):
        assert "closed" in body["detail"]
    await assert_nothing_written(app)


async def test_a_taken_slot_is_409_slot_unavailable(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    start = local(days_ahead(2), "10:00")
    await add_reservation(app, studio, service, start)
    key = await make_key(app, studio)
    body = assert_problem(await post(client, key, booking(service, start)), 409, "slot_unavailable")
    assert body["remaining_capacity"] == 0
    # Overlapping is taken too: 10:30 would run into the 10:00 booking.
    assert_problem(
        await post(client, key, booking(service, start + timedelta(minutes=30)), "key-2"),
        409,
        "slot_unavailable",
    )
    assert await reservation_count(app) == 1


async def test_too_few_places_is_409_with_what_is_left(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio, capacity=3)
    start = local(days_ahead(2), "10:00")
    await add_reservation(app, studio, service, start, party_size=2)
    key = await make_key(app, studio)
    body = assert_problem(
        await post(client, key, booking(service, start, party_size=2)), 409, "insufficient_capacity"
    )
    assert body["remaining_capacity"] == 1
    assert (await post(client, key, booking(service, start, party_size=1), "key-2")).status_code == 201
    assert await seats_taken(app, service) == 3


# --- Field errors -----------------------------------------------------------------------------------


async def test_field_errors_name_every_bad_field(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:00")
    body = booking(
        service,
        start.replace(tzinfo=None).isoformat(),
        customer={"name": "   ", "email": "not-an-email", "phone": "call me"},
    )
    problem = assert_problem(await post(client, key, body), 422, "validation_error")
    assert [error["pointer"] for error in problem["errors"]] == [
        "/start",
        "/customer/name",
        "/customer/email",
        "/customer/phone",
    ]
    assert all(error["detail"] for error in problem["errors"])
    await assert_nothing_written(app)


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"service_id": "not-a-uuid"}, "/service_id"),
        ({"service_id": None}, "/service_id"),
        ({"start": "next tuesday"}, "/start"),
        ({"start": None}, "/start"),
        ({"party_size": 0}, "/party_size"),
        ({"party_size": "two"}, "/party_size"),
        ({"customer": {"email": "ada@example.com"}}, "/customer/name"),
        ({"customer": {"name": "Ada", "email": 42}}, "/customer/email"),
        ({"customer": {"name": "A" * 201, "email": "ada@example.com"}}, "/customer/name"),
        ({"notes": "n" * 2001}, "/notes"),
    ],
)
async def test_type_errors_point_at_the_field(
    client: Client, app: Litestar, studio: Staff, change: dict[str, Any], pointer: str
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00")) | change
    body = {name: value for name, value in body.items() if value is not None}
    problem = assert_problem(await post(client, key, body), 422, "validation_error")
    assert [error["pointer"] for error in problem["errors"]] == [pointer]
    await assert_nothing_written(app)


async def test_unknown_or_other_services_and_oversized_parties_are_field_errors(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    service = await bookable_service(app, studio, capacity=4)
    (retired,) = await add_services(app, studio, service_row(studio, is_active=False))
    (theirs,) = await add_services(app, other_studio, service_row(other_studio))
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:00")
    for other in (retired, theirs):
        problem = assert_problem(await post(client, key, booking(other, start)), 422, "validation_error")
        assert [error["pointer"] for error in problem["errors"]] == ["/service_id"]
    problem = assert_problem(
        await post(client, key, booking(service, start, party_size=5)), 422, "validation_error"
    )
    assert [error["pointer"] for error in problem["errors"]] == ["/party_size"]
    await assert_nothing_written(app)


async def test_malformed_and_missing_bodies(client: Client, app: Litestar, studio: Staff) -> None:
    await bookable_service(app, studio)
    key = await make_key(app, studio)
    assert_problem(await post(client, key, b"{not json"), 400, "bad_request")
    problem = assert_problem(await post(client, key, b""), 422, "validation_error")
    assert problem["errors"][0]["pointer"] == ""
    problem = assert_problem(await post(client, key, b"[]"), 422, "validation_error")
    assert problem["errors"][0]["pointer"] == ""
    await assert_nothing_written(app)


# --- Idempotency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "idempotency_key_missing"),
        ("", "idempotency_key_missing"),
        ("k" * 256, "idempotency_key_invalid"),
    ],
)
async def test_the_idempotency_key_is_required_and_checked(
    client: Client, app: Litestar, studio: Staff, header: str | None, code: str
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    problem = assert_problem(
        await post(client, key, booking(service, local(days_ahead(2), "10:00")), header), 400, code
    )
    assert "Idempotency-Key" in problem["detail"]
    await assert_nothing_written(app)


async def test_a_retry_gets_the_first_answer_and_books_nothing_more(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio, capacity=5)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    first = await post(client, key, body, "retry-me")
    assert first.status_code == 201
    # The same request again, its keys reordered and spaced differently: still the same request.
    same = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    for retry in (body, same):
        replay = await post(client, key, retry, "retry-me")
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["location"] == first.headers["location"]
        assert replay.json() == first.json()
    assert await reservation_count(app) == 1


async def test_reusing_a_key_for_another_request_is_422(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio, capacity=5)
    key = await make_key(app, studio)
    assert (
        await post(client, key, booking(service, local(days_ahead(2), "10:00")), "once")
    ).status_code == 201
    other = booking(service, local(days_ahead(2), "11:00"))
    assert_problem(await post(client, key, other, "once"), 422, "idempotency_key_reused")
    assert_problem(await post(client, key, other | {"party_size": 2}, "once"), 422, "idempotency_key_reused")
    assert await reservation_count(app) == 1


async def test_keys_are_scoped_to_the_api_key(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio, capacity=5)
    first_key, second_key = await make_key(app, studio), await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    first = await post(client, first_key, body, "shared")
    second = await post(client, second_key, body, "shared")
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


async def test_a_refusal_is_not_remembered(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    taken = local(days_ahead(2), "10:00")
    await add_reservation(app, studio, service, taken)
    key = await make_key(app, studio)
    assert_problem(await post(client, key, booking(service, taken), "widget-1"), 409, "slot_unavailable")
    # The widget offers another slot and retries with the same key: it is a fresh request.
    retry = await post(client, key, booking(service, taken + timedelta(hours=2)), "widget-1")
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers


async def claim_directly(
    app: Litestar, key: str, body: dict[str, Any], idempotency_key: str, **values: Any
) -> None:
    """An in-flight claim, as a request that is still running (or that died) leaves it."""
    canonical = msgspec.json.decode(json.dumps(body), type=ReservationIn).canonical()
    key_id = await key_id_of(app, key)
    async with transaction(alchemy_of(app)) as session:
        session.add(
            IdempotencyRecord(
                api_key_id=key_id,
                idempotency_key=idempotency_key,
                request_fingerprint=idempotency.fingerprint("POST", RESERVATIONS, canonical),
                state="in_flight",
                claim_token="t" * 32,
                **values,
            )
        )


async def test_a_key_still_in_flight_is_409_until_its_lease_runs_out(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    await claim_directly(app, key, body, "busy", expires_at=datetime.now(UTC) + timedelta(minutes=1))
    response = await post(client, key, body, "busy")
    assert_problem(response, 409, "idempotency_request_in_progress")
    assert int(response.headers["retry-after"]) >= 1
    assert_problem(
        await post(client, key, booking(service, local(days_ahead(2), "11:00")), "busy"),
        422,
        "idempotency_key_reused",
    )
    assert await reservation_count(app) == 0
    # The first request died without booking; once its lease is over, the retry books.
    async with transaction(alchemy_of(app)) as session:
        await session.execute(
            update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await post(client, key, body, "busy")).status_code == 201
    assert await reservation_count(app) == 1


async def test_a_remembered_answer_expires_after_24_hours(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio, capacity=2)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    first = await post(client, key, body, "daily")
    (record,) = await idempotency_records(app)
    assert record.state == "completed"
    retention = record.expires_at - datetime.fromisoformat(first.json()["created_at"])
    assert timedelta(hours=23, minutes=59) <= retention <= timedelta(hours=24, seconds=1)
    async with transaction(alchemy_of(app)) as session:
        await session.execute(
            update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    later = await post(client, key, body, "daily")
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]


async def test_an_answer_is_replayed_for_24_hours_by_the_apps_clock(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    service = await bookable_service(app, studio, capacity=2)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(3), "10:00"))
    first = await post(client, key, body, "daily")
    assert first.status_code == 201, first.text
    clock.advance(timedelta(hours=23, minutes=59))
    again = await post(client, key, body, "daily")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    clock.advance(timedelta(minutes=2))
    later = await post(client, key, body, "daily")
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    assert await reservation_count(app) == 2


async def test_deleting_the_api_key_keeps_its_reservations(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = await post(client, key, booking(service, local(days_ahead(2), "10:00")))
    assert created.status_code == 201
    async with transaction(alchemy_of(app)) as session:
        await session.execute(ApiKey.__table__.delete())
    async with transaction(alchemy_of(app)) as session:
        (reservation,) = (await session.scalars(select(Reservation))).all()
    assert reservation.public_id == created.json()["id"] and reservation.api_key_id is None
    assert await idempotency_records(app) == []  # the key's records go with it


# --- A busy database --------------------------------------------------------------------------------


async def test_a_booking_that_cannot_get_its_lock_is_503_and_can_be_retried(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    async with transaction(alchemy_of(app)) as session:
        # Another writer holds the lock a booking of this service needs, for longer than the booking waits.
        if session.get_bind().dialect.name == "sqlite":
            await session.execute(text("DELETE FROM idempotency_records WHERE 1 = 0"))  # takes the write lock
        else:
            await session.execute(select(Service).where(Service.id == service.id).with_for_update())
        response = await post(client, key, body, "patient")
    problem = assert_problem(response, 503, "service_unavailable")
    assert problem and int(response.headers["retry-after"]) >= 1
    assert await reservation_count(app) == 0
    retry = await post(client, key, body, "patient")
    assert retry.status_code == 201, retry.text


async def test_openapi_documents_availability_and_reservations(client: Client) -> None:
    schema = (await client.get("/api/docs/openapi.json")).json()
    paths = schema["paths"]
    assert {"/api/v1/availability", RESERVATIONS, f"{RESERVATIONS}/{{reservation_id}}"} <= set(paths)
    create = paths[RESERVATIONS]["post"]
    assert create["tags"] == ["Reservations"] and {"201", "400", "409", "422"} <= set(create["responses"])
    assert [parameter["name"] for parameter in create["parameters"]] == ["Idempotency-Key"]
    assert {tag["name"] for tag in schema["tags"]} >= {"Availability", "Reservations"}


async def test_a_booking_over_the_rate_limit_is_refused_and_books_nothing(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio, rate_limit=1)
    first = await post(client, key, booking(service, local(days_ahead(2), "10:30")), "first")
    assert first.status_code == 201, first.text
    refused = await post(client, key, booking(service, local(days_ahead(2), "11:30")), "second")
    assert_problem(refused, 429, "rate_limited")
    assert await reservation_count(app) == 1
    assert len(await idempotency_records(app)) == 1
