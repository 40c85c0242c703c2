"""GET /api/v1/availability: free slots day by day in the asked time zone, as a booking widget shows them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.domain.booking.models import Service
from tests.api_helpers import add_services, assert_problem, bearer, make_key, service_row
from tests.booking_helpers import (
    LONDON,
    add_closure,
    add_opening_hours,
    add_reservation,
    bookable_service,
    days_ahead,
    local,
    next_transition,
)
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
AVAILABILITY = "/api/v1/availability"
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = [f"{hour:02}:{minute:02}" for hour in range(9, 16) for minute in (0, 30)] + ["16:00"]


async def studio_with_service(app: Litestar, studio: Staff, **overrides: Any) -> Service:
    """Open 09:00-17:00 every day (Europe/London); an hour-long appointment every half hour."""
    return await bookable_service(app, studio, **({"booking_horizon_days": 400} | overrides))


async def fetch(
    client: Client, key: str, service: Service | str, first: date, last: date, **params: str
) -> Any:
    service_id = service if isinstance(service, str) else str(service.id)
    query = {
        "service_id": service_id,
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        **params,
    }
    return await client.get(AVAILABILITY, params=query, headers=bearer(key))


def clocks(day: dict[str, Any]) -> list[str]:
    return [slot["start"][11:16] for slot in day["slots"]]


async def test_a_week_of_free_slots_in_the_business_time_zone(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await studio_with_service(app, studio)
    key = await make_key(app, studio, scopes=("read",))
    first = days_ahead(7)
    response = await fetch(client, key, service, first, first + timedelta(days=6))
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    assert body["service_id"] == str(service.id) and body["time_zone"] == "Europe/London"
    assert [day["date"] for day in body["days"]] == [
        (first + timedelta(days=n)).isoformat() for n in range(7)
    ]
    for day in body["days"]:
        assert clocks(day) == NINE_TO_FIVE
        for slot in day["slots"]:
            start = local(date.fromisoformat(day["date"]), slot["start"][11:16])
            assert slot["start"] == start.isoformat()  # RFC 3339 with London's offset that day
            assert slot["end"] == (start + timedelta(hours=1)).isoformat()
            assert slot["remaining_capacity"] == 1


async def test_days_are_grouped_in_the_visitors_time_zone(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await studio_with_service(app, studio)
    key = await make_key(app, studio)
    first = days_ahead(10, NEW_YORK)
    last = first + timedelta(days=1)
    body = (await fetch(client, key, service, first, last, time_zone="America/New_York")).json()
    assert body["time_zone"] == "America/New_York"
    for day in body["days"]:
        assert clocks(day)[0] in ("04:00", "05:00"), "London's 09:00 is 04:00 or 05:00 in New York"
        for slot in day["slots"]:
            assert (
                slot["start"]
                == local(date.fromisoformat(day["date"]), slot["start"][11:16], NEW_YORK).isoformat()
            )
    # The same instants as London's own listing of those dates, only written with another offset.
    london = (await fetch(client, key, service, first, last)).json()
    assert instants(body) == instants(london) and len(instants(london)) == 2 * len(NINE_TO_FIVE)
    # Tokyo is ahead: London's afternoon falls on Tokyo's next date, so three Tokyo dates hold those two days.
    tokyo = (
        await fetch(client, key, service, first, last + timedelta(days=1), time_zone="Asia/Tokyo")
    ).json()
    assert all(
        slot["start"].startswith(day["date"]) and slot["start"].endswith("+09:00")
        for day in tokyo["days"]
        for slot in day["slots"]
    )
    assert instants(london) <= instants(tokyo)


def instants(body: dict[str, Any]) -> set[datetime]:
    return {datetime.fromisoformat(slot["start"]) for day in body["days"] for slot in day["slots"]}


async def test_utc_times_carry_a_zero_offset(client: Client, app: Litestar, studio: Staff) -> None:
    service = await studio_with_service(app, studio)
    key = await make_key(app, studio)
    first = days_ahead(5)
    body = (await fetch(client, key, service, first, first, time_zone="UTC")).json()
    assert body["days"][0]["slots"][0]["start"].endswith("+00:00")


async def test_booked_appointments_are_left_out_and_classes_count_down(
    client: Client, app: Litestar, studio: Staff
) -> None:
    appointment = await studio_with_service(app, studio)
    (yoga,) = await add_services(
        app, studio, service_row(studio, name="Yoga", capacity=12, slot_interval_minutes=60)
    )
    day = days_ahead(3)
    await add_reservation(app, studio, appointment, local(day, "10:00"))
    await add_reservation(app, studio, yoga, local(day, "10:00"), party_size=5)
    key = await make_key(app, studio)

    (listed,) = (await fetch(client, key, appointment, day, day)).json()["days"]
    # The 10:00 hour blocks every slot overlapping it: 09:30, 10:00 and 10:30.
    assert clocks(listed) == [clock for clock in NINE_TO_FIVE if clock not in ("09:30", "10:00", "10:30")]
    (classes,) = (await fetch(client, key, yoga, day, day)).json()["days"]
    assert [(slot["start"][11:16], slot["remaining_capacity"]) for slot in classes["slots"]][:3] == [
        ("09:00", 12),
        ("10:00", 7),
        ("11:00", 12),
    ]


async def test_buffers_block_the_slots_around_a_booking(client: Client, app: Litestar, studio: Staff) -> None:
    service = await studio_with_service(app, studio, buffer_after_minutes=15)
    day = days_ahead(3)
    await add_reservation(app, studio, service, local(day, "12:00"))
    key = await make_key(app, studio)
    (listed,) = (await fetch(client, key, service, day, day)).json()["days"]
    # 11:00 would end at 12:00 and clean up into the booking; 13:00 starts inside the booking's clean-up.
    assert "11:00" not in clocks(listed) and "13:00" not in clocks(listed)
    assert "10:30" in clocks(listed) and "13:30" in clocks(listed)


async def test_closures_notice_and_horizon(client: Client, app: Litestar, studio: Staff) -> None:
    service = await studio_with_service(app, studio, booking_horizon_days=10, min_notice_minutes=2 * 24 * 60)
    closed = days_ahead(5)
    await add_closure(app, studio, closed, closed + timedelta(days=1))
    key = await make_key(app, studio)
    first = days_ahead(-1)
    body = (await fetch(client, key, service, first, first + timedelta(days=14))).json()
    counts = {date.fromisoformat(day["date"]): len(day["slots"]) for day in body["days"]}
    assert counts[days_ahead(-1)] == counts[days_ahead(0)] == counts[days_ahead(1)] == 0  # past and notice
    assert counts[days_ahead(3)] == counts[days_ahead(4)] == len(NINE_TO_FIVE)
    assert counts[closed] == counts[closed + timedelta(days=1)] == 0
    assert counts[days_ahead(12)] == counts[days_ahead(13)] == 0  # beyond ten days


async def test_dst_days_in_the_business_time_zone(client: Client, app: Litestar, studio: Staff) -> None:
    # Open through the night of each change, so the missing and the repeated hour both show.
    spring, autumn = next_transition(LONDON, forward=True), next_transition(LONDON, forward=False)
    await add_opening_hours(app, studio, [("00:00", "03:00")], weekdays=(6,))  # DST changes on Sundays
    (service,) = await add_services(
        app, studio, service_row(studio, duration_minutes=30, booking_horizon_days=400)
    )
    key = await make_key(app, studio)
    (spring_day,) = (await fetch(client, key, service, spring, spring)).json()["days"]
    assert [slot["start"][11:] for slot in spring_day["slots"]] == [
        "00:00:00+00:00",
        "00:30:00+00:00",
        "02:00:00+01:00",
        "02:30:00+01:00",
    ]
    (autumn_day,) = (await fetch(client, key, service, autumn, autumn)).json()["days"]
    starts = [slot["start"][11:] for slot in autumn_day["slots"]]
    assert starts == [
        "00:00:00+01:00",
        "00:30:00+01:00",
        "01:00:00+01:00",
        "01:30:00+01:00",
        "01:00:00+00:00",
        "01:30:00+00:00",
        "02:00:00+00:00",
        "02:30:00+00:00",
    ]


async def test_invalid_queries_are_422_with_pointers(client: Client, app: Litestar, studio: Staff) -> None:
    service = await studio_with_service(app, studio)
    key = await make_key(app, studio)
    today = days_ahead(0)
    cases = [
        ({"end_date": (today + timedelta(days=31)).isoformat()}, ["/end_date"]),
        ({"end_date": (today - timedelta(days=1)).isoformat()}, ["/end_date"]),
        ({"time_zone": "Mars/Olympus"}, ["/time_zone"]),
        (
            {"time_zone": "Mars/Olympus", "end_date": (today + timedelta(days=40)).isoformat()},
            ["/end_date", "/time_zone"],
        ),
        ({"start_date": "2026-13-01"}, ["/start_date"]),
        ({"start_date": None}, ["/start_date"]),
        ({"service_id": None}, ["/service_id"]),
    ]
    for change, pointers in cases:
        params = {
            "service_id": str(service.id),
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=30)).isoformat(),
        } | change
        query = {name: value for name, value in params.items() if value is not None}
        response = await client.get(AVAILABILITY, params=query, headers=bearer(key))
        body = assert_problem(response, 422, "validation_error")
        assert [error["pointer"] for error in body["errors"]] == pointers, change
        assert all(error["detail"] for error in body["errors"])
    # 31 days, both ends included, is the most.
    assert (await fetch(client, key, service, today, today + timedelta(days=30))).status_code == 200


async def test_unknown_retired_and_other_organizations_services_are_404(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    await studio_with_service(app, studio)
    (retired,) = await add_services(app, studio, service_row(studio, is_active=False))
    (theirs,) = await add_services(app, other_studio, service_row(other_studio))
    key = await make_key(app, studio)
    day = days_ahead(1)
    for service_id in (str(retired.id), str(theirs.id), "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert_problem(await fetch(client, key, service_id, day, day), 404, "not_found")


async def test_availability_needs_the_read_scope(client: Client, app: Litestar, studio: Staff) -> None:
    service = await studio_with_service(app, studio)
    write_only = await make_key(app, studio, scopes=("write",))
    day = days_ahead(1)
    assert_problem(await fetch(client, write_only, service, day, day), 403, "insufficient_scope")
