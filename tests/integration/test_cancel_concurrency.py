"""Races around cancelling: two cancels of one reservation, and a cancel against bookings of the freed place;
in one app and against a multi-process server."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from app.domain.booking.models import Reservation, Service
from app.lib.db import transaction
from tests.api_helpers import bearer, make_key
from tests.booking_helpers import bookable_service, booking, days_ahead, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"
Poster = Any  # AsyncTestClient or httpx.AsyncClient: both post the same way


async def booked_appointment(
    app: Litestar, studio: Staff, poster: Poster
) -> tuple[Service, datetime, str, str]:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    start = local(days_ahead(2), "10:00")
    response = await poster.post(
        RESERVATIONS, json=booking(service, start), headers=bearer(key, **{"Idempotency-Key": "first"})
    )
    assert response.status_code == 201, response.text
    return service, start, key, response.json()["id"]


async def confirmed_at(app: Litestar, service: Service) -> int:
    async with transaction(alchemy_of(app)) as session:
        count = await session.scalar(
            select(func.count()).where(
                Reservation.service_id == service.id, Reservation.status == "confirmed"
            )
        )
    return int(count or 0)


def cancel(poster: Poster, key: str, reservation_id: str, idempotency_key: str) -> Any:
    return poster.post(
        f"{RESERVATIONS}/{reservation_id}/cancel",
        json={"reason": "race"},
        headers=bearer(key, **{"Idempotency-Key": idempotency_key}),
    )


async def two_cancels(app: Litestar, studio: Staff, poster: Poster) -> None:
    _service, _start, key, reservation_id = await booked_appointment(app, studio, poster)
    responses = await asyncio.gather(*(cancel(poster, key, reservation_id, f"k{n % 2}") for n in range(8)))
    assert {response.status_code for response in responses} == {200}, [r.text for r in responses]
    bodies = [response.json() for response in responses]
    # One cancellation: every answer has the same time; each key replays its first answer.
    assert len({(body["status"], body["cancelled_at"], body["updated_at"]) for body in bodies}) == 1
    assert bodies[0]["status"] == "cancelled"
    fresh = Counter(response.headers.get("idempotent-replayed") for response in responses)
    assert fresh == {None: 2, "true": 6}


async def cancel_against_bookings(app: Litestar, studio: Staff, poster: Poster) -> None:
    service, start, key, reservation_id = await booked_appointment(app, studio, poster)
    bookings = [
        poster.post(
            RESERVATIONS, json=booking(service, start), headers=bearer(key, **{"Idempotency-Key": f"b{n}"})
        )
        for n in range(8)
    ]
    cancelled, *booked = await asyncio.gather(cancel(poster, key, reservation_id, "c"), *bookings)
    assert cancelled.status_code == 200, cancelled.text
    outcomes = Counter(
        (response.status_code, None if response.status_code == 201 else response.json()["code"])
        for response in booked
    )
    # Never two on the one place: at most one booking got it, the others (or all, if they ran first) were told
    # it was taken.
    assert outcomes[(201, None)] <= 1 and sum(outcomes.values()) == 8
    assert set(outcomes) <= {(201, None), (409, "slot_unavailable")}
    assert await confirmed_at(app, service) == outcomes[(201, None)]
    if not outcomes[(201, None)]:  # every booking came before the cancel: the place is free now
        late = await poster.post(
            RESERVATIONS, json=booking(service, start), headers=bearer(key, **{"Idempotency-Key": "late"})
        )
        assert late.status_code == 201, late.text
    assert await confirmed_at(app, service) == 1


async def test_two_cancels_cancel_once(client: Client, app: Litestar, studio: Staff) -> None:
    await two_cancels(app, studio, client)


async def test_a_cancel_racing_bookings_of_its_place_never_double_books(
    client: Client, app: Litestar, studio: Staff
) -> None:
    await cancel_against_bookings(app, studio, client)


async def test_a_multi_process_server_cancels_once(
    app: Litestar, studio: Staff, http: httpx.AsyncClient
) -> None:
    await two_cancels(app, studio, http)


async def test_a_multi_process_server_never_double_books_a_freed_place(
    app: Litestar, studio: Staff, http: httpx.AsyncClient
) -> None:
    await cancel_against_bookings(app, studio, http)
