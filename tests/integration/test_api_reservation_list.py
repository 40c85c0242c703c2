"""GET /api/v1/reservations: every change in order, paged by cursor, filtered; no gaps or repeats while
bookings are being made."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.domain.booking.models import Service
from app.lib.clock import SettableClock
from tests.api_helpers import add_services, assert_problem, bearer, make_key, service_row
from tests.booking_helpers import add_opening_hours, bookable_service, booking, days_ahead, local
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


async def book(client: Client, key: str, service: Service, start: datetime, idempotency_key: str) -> str:
    response = await client.post(
        RESERVATIONS,
        json=booking(service, start),
        headers=bearer(key, **{"Idempotency-Key": idempotency_key}),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def page(client: Client, key: str, **params: Any) -> dict[str, Any]:
    response = await client.get(RESERVATIONS, params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def everything(
    client: Client, key: str, cursor: str | None = None, **params: Any
) -> tuple[list[str], str | None]:
    """Ids of every page from `cursor` on, and the cursor to ask again later."""
    ids: list[str] = []
    while True:
        body = await page(client, key, **params, **({"cursor": cursor} if cursor else {}))
        ids += [item["id"] for item in body["data"]]
        cursor = body["next_cursor"] or cursor
        if not body["has_more"]:
            return ids, cursor


async def test_changes_in_order_paged_and_resumed_later(client: Client, app: Litestar, studio: Staff) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    reader = await make_key(app, studio, scopes=("read",))
    day = days_ahead(2)
    made = [await book(client, key, service, local(day, f"{9 + n:02d}:00"), f"k{n}") for n in range(5)]

    first = await page(client, reader, limit=2)
    assert [item["id"] for item in first["data"]] == made[:2] and first["has_more"] is True
    rest, resume = await everything(client, reader, first["next_cursor"], limit=2)
    assert rest == made[2:]
    # The last page still gives a cursor: nothing new yet, then exactly the changes since.
    assert (await page(client, reader, cursor=resume)) == {"data": [], "has_more": False, "next_cursor": None}
    cancelled = await client.post(
        f"{RESERVATIONS}/{made[1]}/cancel", headers=bearer(key, **{"Idempotency-Key": "c"})
    )
    assert cancelled.status_code == 200
    later = await book(client, key, service, local(day, "15:00"), "k-later")
    since = await page(client, reader, cursor=resume)
    assert [(item["id"], item["status"]) for item in since["data"]] == [
        (made[1], "cancelled"),
        (later, "confirmed"),
    ]
    assert since["data"][0] == cancelled.json()
    # From the start, the cancelled one now comes after those that did not change since.
    assert (await everything(client, reader))[0] == [made[0], *made[2:], made[1], later]


async def test_filters(client: Client, app: Litestar, studio: Staff, other_studio: Staff) -> None:
    await add_opening_hours(app, studio, (("09:00", "17:00"),))
    massage, yoga = await add_services(app, studio, service_row(studio), service_row(studio, name="Yoga"))
    key = await make_key(app, studio)
    day = days_ahead(2)
    a = await book(client, key, massage, local(day, "09:00"), "a")
    b = await book(client, key, yoga, local(day, "09:00"), "b")
    c = await book(client, key, massage, local(day, "11:00"), "c")
    cancelled = await client.post(
        f"{RESERVATIONS}/{a}/cancel", headers=bearer(key, **{"Idempotency-Key": "x"})
    )
    assert cancelled.status_code == 200

    assert (await everything(client, key, status="cancelled"))[0] == [a]
    assert (await everything(client, key, status="confirmed"))[0] == [b, c]
    assert (await everything(client, key, service_id=str(massage.id)))[0] == [c, a]
    c_changed = next(item for item in (await page(client, key))["data"] if item["id"] == c)["updated_at"]
    assert (await everything(client, key, updated_since=c_changed))[0] == [c, a]
    assert (await everything(client, key, updated_since="2000-01-01T00:00:00+01:00"))[0] == [b, c, a]
    # Another organization sees none of them.
    theirs = await make_key(app, other_studio)
    assert (await page(client, theirs)) == {"data": [], "has_more": False, "next_cursor": None}


async def test_changes_stay_in_order_when_the_clock_stands_still_or_steps_back(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    service = await bookable_service(app, studio)
    key = await make_key(app, studio)
    day = days_ahead(2)
    clock.set(clock())
    same_instant = [
        await book(client, key, service, local(day, f"{9 + n:02d}:00"), f"k{n}") for n in range(3)
    ]
    clock.advance(timedelta(minutes=-10))
    stepped_back = await book(client, key, service, local(day, "14:00"), "back")
    body = await page(client, key)
    assert [item["id"] for item in body["data"]] == [*same_instant, stepped_back]
    stamps = [item["updated_at"] for item in body["data"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4  # strictly increasing, to the microsecond


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"updated_since": "yesterday"}, "/updated_since"),
        ({"updated_since": "2030-01-01T10:00:00"}, "/updated_since"),
        # Valid date-times whose offsets move them off the calendar in UTC.
        ({"updated_since": "0001-01-01T00:00:00+05:00"}, "/updated_since"),
        ({"updated_since": "9999-12-31T23:59:59-05:00"}, "/updated_since"),
        ({"status": "pending"}, None),
        ({"service_id": "not-a-uuid"}, None),
        ({"limit": "0"}, None),
        ({"limit": "101"}, None),
        ({"cursor": "nonsense"}, "/cursor"),
        ({"cursor": "AAAA"}, "/cursor"),
    ],
)
async def test_bad_parameters_are_422(
    client: Client, app: Litestar, studio: Staff, params: dict[str, str], pointer: str | None
) -> None:
    key = await make_key(app, studio, scopes=("read",))
    body = assert_problem(
        await client.get(RESERVATIONS, params=params, headers=bearer(key)), 422, "validation_error"
    )
    if pointer is not None:
        assert [error["pointer"] for error in body["errors"]] == [pointer]


async def test_paging_while_bookings_are_made_has_no_gaps_or_repeats(
    client: Client, app: Litestar, studio: Staff
) -> None:
    await add_opening_hours(app, studio, (("08:00", "20:00"),))
    services = await add_services(app, studio, *(service_row(studio, name=f"Room {n}") for n in range(4)))
    key = await make_key(app, studio)
    day = days_ahead(3)
    starts = [local(day, "08:00") + timedelta(hours=n) for n in range(6)]
    writing = True

    async def write() -> list[str]:
        made = await asyncio.gather(
            *(
                book(client, key, service, start, f"{service.name}-{start:%H%M}")
                for start in starts
                for service in services
            )
        )
        return list(made)

    async def read() -> list[str]:
        seen: list[str] = []
        cursor = None
        while writing:
            body = await page(client, key, limit=3, **({"cursor": cursor} if cursor else {}))
            seen += [item["id"] for item in body["data"]]
            cursor = body["next_cursor"] or cursor
            await asyncio.sleep(0)
        rest, _ = await everything(client, key, cursor, limit=3)
        return seen + rest

    async def write_then_stop() -> list[str]:
        nonlocal writing
        try:
            return await write()
        finally:
            writing = False

    made, seen = await asyncio.gather(write_then_stop(), read())
    assert len(made) == 24
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
