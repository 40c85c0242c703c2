"""The promise of the issue, end to end on the demo data: list services, show a week of free slots in the
visitor's time zone, book one, and a retry never books twice."""

from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.demo import DEMO_API_KEY, seed_demo
from app.domain.booking.models import OpeningHours
from app.lib.db import transaction
from tests.api_helpers import bearer
from tests.booking_helpers import days_ahead, reservation_count
from tests.fixtures.app import alchemy_of

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
NEW_YORK = ZoneInfo("America/New_York")


async def seed(app: Litestar) -> bool:
    async with transaction(alchemy_of(app)) as session:
        return await seed_demo(session)


async def test_demo_opening_hours_are_seeded_once(app: Litestar) -> None:
    assert await seed(app) is True
    assert await seed(app) is False
    async with transaction(alchemy_of(app)) as session:
        hours = (await session.scalars(select(OpeningHours))).all()
    by_day = sorted(
        (item.weekday, item.opens_at.isoformat("minutes"), item.closes_at.isoformat("minutes"))
        for item in hours
    )
    weekdays = [entry for day in range(5) for entry in ((day, "09:00", "13:00"), (day, "14:00", "18:00"))]
    assert by_day == [*weekdays, (5, "10:00", "14:00")]


async def test_a_widget_lists_shows_a_week_and_books_once(client: Client, app: Litestar) -> None:
    await seed(app)
    headers = bearer(DEMO_API_KEY, Origin="https://widget.example")
    services = (await client.get("/api/v1/services", headers=headers)).json()["data"]
    massage = next(service for service in services if service["name"] == "Deep Tissue Massage")

    monday = days_ahead(7 - days_ahead(0).weekday() + 7)  # a Monday at least a week away
    week = await client.get(
        "/api/v1/availability",
        params={
            "service_id": massage["id"],
            "start_date": monday.isoformat(),
            "end_date": (monday + timedelta(days=6)).isoformat(),
            "time_zone": "America/New_York",
        },
        headers=headers,
    )
    assert week.status_code == 200
    days = week.json()["days"]
    # In New York the London studio opens at 04:00 or 05:00; Monday to Friday have a lunch break, Sunday nothing.
    assert [len(day["slots"]) for day in days] == [14, 14, 14, 14, 14, 7, 0]
    first = days[0]["slots"][0]
    assert first["start"][11:16] in ("04:00", "05:00") and first["start"][-6:] in ("-05:00", "-04:00")

    idempotency_key = str(uuid.uuid4())
    body = {
        "service_id": massage["id"],
        "start": first["start"],
        "customer": {"name": "Ada", "email": "a@b.co"},
    }
    booked = await client.post(
        "/api/v1/reservations", json=body, headers=headers | {"Idempotency-Key": idempotency_key}
    )
    assert booked.status_code == 201
    retried = await client.post(
        "/api/v1/reservations", json=body, headers=headers | {"Idempotency-Key": idempotency_key}
    )
    assert retried.status_code == 201 and retried.json() == booked.json()
    assert retried.headers["idempotent-replayed"] == "true"
    assert await reservation_count(app) == 1

    after = await client.get(
        "/api/v1/availability",
        params={
            "service_id": massage["id"],
            "start_date": monday.isoformat(),
            "end_date": monday.isoformat(),
        },
        headers=headers,
    )
    starts = [slot["start"][11:16] for slot in after.json()["days"][0]["slots"]]
    # 09:00 is booked; 09:30 overlaps it and 10:00 starts inside its 15-minute clean-up.
    assert starts[:2] == ["10:30", "11:00"] and len(starts) == 14 - 3
