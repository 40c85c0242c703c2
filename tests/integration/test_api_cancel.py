"""POST /api/v1/reservations/{id}/cancel: cancelling, its refusals, idempotent retries, and the freed places."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.booking.models import Reservation, Service
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.api_helpers import assert_problem, bearer, make_key
from tests.booking_helpers import bookable_service, booking, days_ahead, idempotency_records, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


async def book(
    client: Client, key: str, service: Service, start: datetime, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        RESERVATIONS,
        json=booking(service, start, **overrides),
        headers=bearer(key, **{"Idempotency-Key": f"book-{start.isoformat()}-{overrides}"}),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def cancel(
    client: Client, key: str, reservation_id: str, body: Any = None, idempotency_key: str | None = "cancel-1"
) -> Any:
    headers = bearer(key) | ({"Idempotency-Key": idempotency_key} if idempotency_key is not None else {})
    if body is None:
        return await client.post(f"{RESERVATIONS}/{reservation_id}/cancel", headers=headers)
    return await client.post(f"{RESERVATIONS}/{reservation_id}/cancel", json=body, headers=headers)


async def free_starts(client: Client, key: str, service: Service, start: datetime) -> list[str]:
    day = start.date()
    listed = await client.get(
        "/api/v1/availability",
        params={"service_id": str(service.id), "start_date": day.isoformat(), "end_date": day.isoformat()},
        headers=bearer(key),
    )
    assert listed.status_code == 200, listed.text
    return [slot["start"] for slot in listed.json()["days"][0]["slots"]]


async def stored(app: Litestar, reservation_id: str) -> Reservation:
    async with transaction(alchemy_of(app)) as session:
        reservation = await session.scalar(select(Reservation).where(Reservation.public_id == reservation_id))
    assert reservation is not None
    return reservation


async def test_cancelling_frees_the_slot_at_once(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:00")
    created = await book(client, key, service, start)
    assert start.isoformat() not in await free_starts(client, key, service, start)
    before = datetime.now(UTC)

    response = await cancel(client, key, created["id"], {"reason": "  Customer is ill  "})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled" and body["id"] == created["id"]
    cancelled_at = datetime.fromisoformat(body["cancelled_at"])
    assert before - timedelta(seconds=1) <= cancelled_at <= datetime.now(UTC)
    assert body["updated_at"] > created["updated_at"]
    assert body["manage_url"] == created["manage_url"]
    assert "idempotent-replayed" not in response.headers
    # The very next availability request offers the slot again, and it can be booked.
    assert start.isoformat() in await free_starts(client, key, service, start)
    await book(client, key, service, start, party_size=1, notes="again")
    fetched = (await client.get(f"{RESERVATIONS}/{created['id']}", headers=bearer(key))).json()
    assert fetched == body
    assert (await stored(app, created["id"])).cancellation_reason == "Customer is ill"


async def test_a_body_is_optional(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = await book(client, key, service, local(days_ahead(2), "10:00"))
    response = await cancel(client, key, created["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert (await stored(app, created["id"])).cancellation_reason == ""


async def test_cancelling_twice_replays_or_answers_it_as_it_is(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = await book(client, key, service, local(days_ahead(2), "10:00"))
    first = await cancel(client, key, created["id"], {"reason": "moved"}, "c-1")
    again = await cancel(client, key, created["id"], {"reason": "moved"}, "c-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # Another key: nothing changes (not the time, not the reason), and it is no replay.
    other = await cancel(client, key, created["id"], {"reason": "other"}, "c-2")
    assert other.status_code == 200 and "idempotent-replayed" not in other.headers
    assert other.json() == first.json()
    assert (await stored(app, created["id"])).cancellation_reason == "moved"
    # The same key for a different request is refused, as when booking.
    assert_problem(
        await cancel(client, key, created["id"], {"reason": "changed"}, "c-1"), 422, "idempotency_key_reused"
    )
    second = await book(client, key, service, local(days_ahead(2), "12:00"))
    assert_problem(await cancel(client, key, second["id"], None, "c-1"), 422, "idempotency_key_reused")
    assert (await stored(app, second["id"])).status == "confirmed"


async def test_a_started_reservation_is_409_and_stays(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:00")
    created = await book(client, key, service, start)
    clock.advance(start.astimezone(UTC) - clock() + timedelta(minutes=1))
    assert_problem(await cancel(client, key, created["id"]), 409, "reservation_started")
    assert (await stored(app, created["id"])).status == "confirmed"
    # A refusal is not remembered: the key is free for a retry.
    assert all(record.idempotency_key != "cancel-1" for record in await idempotency_records(app))


async def test_another_organizations_reservation_is_404(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = await book(client, key, service, local(days_ahead(2), "10:00"))
    theirs = await make_key(app, other_studio)
    assert_problem(await cancel(client, theirs, created["id"]), 404, "not_found")
    assert_problem(await cancel(client, key, "res_" + "x" * 24), 404, "not_found")
    assert (await stored(app, created["id"])).status == "confirmed"


async def test_scope_key_and_body_are_checked(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    created = await book(client, key, service, local(days_ahead(2), "10:00"))
    reader = await make_key(app, studio, scopes=("read",))
    assert_problem(await cancel(client, reader, created["id"]), 403, "insufficient_scope")
    assert_problem(
        await cancel(client, key, created["id"], idempotency_key=None), 400, "idempotency_key_missing"
    )
    long_reason = await cancel(client, key, created["id"], {"reason": "x" * 501})
    assert assert_problem(long_reason, 422, "validation_error")["errors"][0]["pointer"] == "/reason"
    nul = await cancel(client, key, created["id"], {"reason": "a\u0000b"})
    assert assert_problem(nul, 422, "validation_error")["errors"][0]["pointer"] == "/reason"
    wrong_type = await cancel(client, key, created["id"], {"reason": 5})
    assert_problem(wrong_type, 422, "validation_error")
    assert (await stored(app, created["id"])).status == "confirmed"


async def test_openapi_documents_cancel_and_list(client: Client) -> None:
    schema = (await client.get("/api/docs/openapi.json")).json()
    paths = schema["paths"]
    cancel_op = paths[f"{RESERVATIONS}/{{reservation_id}}/cancel"]["post"]
    assert cancel_op["tags"] == ["Reservations"]
    assert {"200", "400", "401", "403", "404", "409", "422", "429", "500", "503"} <= set(
        cancel_op["responses"]
    )
    assert "reservation_started" in cancel_op["responses"]["409"]["description"]
    assert [parameter["name"] for parameter in cancel_op["parameters"]] == [
        "reservation_id",
        "Idempotency-Key",
    ]
    listing = paths[RESERVATIONS]["get"]
    assert {"200", "401", "403", "422", "429"} <= set(listing["responses"])
    assert {parameter["name"] for parameter in listing["parameters"]} == {
        "updated_since",
        "status",
        "service_id",
        "limit",
        "cursor",
    }
    out = schema["components"]["schemas"]["ReservationOut"]["properties"]
    assert {"updated_at", "cancelled_at", "manage_url"} <= set(out)
