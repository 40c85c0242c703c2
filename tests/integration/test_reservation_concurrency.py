"""Races for the last places: real concurrent requests, in one app and against a multi-process server."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.domain.booking.models import Service
from tests.api_helpers import bearer, make_key
from tests.booking_helpers import (
    add_reservation,
    bookable_service,
    booking,
    days_ahead,
    idempotency_records,
    local,
    reservation_count,
    seats_taken,
)
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


async def class_with_three_places_left(app: Litestar, studio: Staff) -> tuple[Service, Any]:
    """A class of 5 with 2 places taken at 10:00 the day after tomorrow."""
    service = await bookable_service(app, studio, name="Spin", capacity=5)
    start = local(days_ahead(2), "10:00")
    await add_reservation(app, studio, service, start, party_size=2)
    return service, start


def codes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    return Counter(
        (response.status_code, None if response.status_code == 201 else response.json()["code"])
        for response in responses
    )


async def test_twenty_requests_for_the_last_three_places(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service, start = await class_with_three_places_left(app, studio)
    key = await make_key(app, studio)
    responses = await asyncio.gather(
        *(
            client.post(
                RESERVATIONS,
                json=booking(service, start),
                headers=bearer(key, **{"Idempotency-Key": f"k{n}"}),
            )
            for n in range(20)
        )
    )
    assert codes(responses) == {(201, None): 3, (409, "slot_unavailable"): 17}
    assert await seats_taken(app, service) == 5
    assert {record.state for record in await idempotency_records(app)} == {"completed"}


async def test_parties_racing_for_places_never_overbook(client: Client, app: Litestar, studio: Staff) -> None:
    service, start = await class_with_three_places_left(app, studio)
    key = await make_key(app, studio)
    responses = await asyncio.gather(
        *(
            client.post(
                RESERVATIONS,
                json=booking(service, start, party_size=2),
                headers=bearer(key, **{"Idempotency-Key": f"party-{n}"}),
            )
            for n in range(10)
        )
    )
    # One party of two fits; every later one finds a single place left.
    assert codes(responses) == {(201, None): 1, (409, "insufficient_capacity"): 9}
    assert {
        response.json()["remaining_capacity"] for response in responses if response.status_code == 409
    } == {1}
    assert await seats_taken(app, service) == 4


async def test_concurrent_retries_of_one_request_book_once(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service, start = await class_with_three_places_left(app, studio)
    key = await make_key(app, studio)
    responses = await asyncio.gather(
        *(
            client.post(
                RESERVATIONS,
                json=booking(service, start),
                headers=bearer(key, **{"Idempotency-Key": "twice"}),
            )
            for _ in range(10)
        )
    )
    booked = [response for response in responses if response.status_code == 201]
    waiting = [response for response in responses if response.status_code == 409]
    assert booked and len(booked) + len(waiting) == 10
    assert {response.json()["id"] for response in booked} == {booked[0].json()["id"]}
    assert all(response.json()["code"] == "idempotency_request_in_progress" for response in waiting)
    assert sum(1 for response in booked if "idempotent-replayed" not in response.headers) == 1
    assert await seats_taken(app, service) == 3 and await reservation_count(app) == 2


# --- A real server: several worker processes, each with its own connection pool --------------------


async def test_a_multi_process_server_never_overbooks(
    app: Litestar, studio: Staff, http: httpx.AsyncClient
) -> None:
    service, start = await class_with_three_places_left(app, studio)
    key = await make_key(app, studio)
    responses = await asyncio.gather(
        *(
            http.post(
                RESERVATIONS,
                json=booking(service, start),
                headers=bearer(key, **{"Idempotency-Key": f"k{n}"}),
            )
            for n in range(20)
        )
    )
    assert codes(responses) == {(201, None): 3, (409, "slot_unavailable"): 17}
    assert await seats_taken(app, service) == 5
    # And a retry of a winner, to whichever process it lands on, is the same booking.
    winner = next(n for n, response in enumerate(responses) if response.status_code == 201)
    replays = await asyncio.gather(
        *(
            http.post(
                RESERVATIONS,
                json=booking(service, start),
                headers=bearer(key, **{"Idempotency-Key": f"k{winner}"}),
            )
            for _ in range(6)
        )
    )
    assert {(response.status_code, response.headers.get("idempotent-replayed")) for response in replays} == {
        (201, "true")
    }
    assert {response.json()["id"] for response in replays} == {responses[winner].json()["id"]}
    assert await seats_taken(app, service) == 5
