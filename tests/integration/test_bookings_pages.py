"""Bookings → Reservations: every staff member sees their organization's reservations, upcoming first."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.api_keys.models import ApiKey
from app.domain.booking.models import Reservation, Service
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.api_helpers import add_services, key_id_of, make_key, service_row
from tests.booking_helpers import add_reservation, days_ahead, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
PAGE = "/bookings/reservations"
TABLE = {"HX-Request": "true", "HX-Target": "reservations-body"}


def customers(html: str) -> list[str]:
    """Customer names in table order (the test names all start with 'Customer ')."""
    return re.findall(r"<td><a [^>]*>(Customer [^<]+)</a><br>", html)


async def two_services(app: Litestar, studio: Staff) -> tuple[Service, Service]:
    massage, yoga = await add_services(
        app, studio, service_row(studio, name="Massage"), service_row(studio, name="Yoga", capacity=10)
    )
    return massage, yoga


async def test_bookings_is_in_the_main_navigation(admin_client: Client) -> None:
    page = await admin_client.get("/bookings", follow_redirects=True)
    assert page.status_code == 200 and str(page.url).endswith(PAGE)
    assert '<a href="/bookings/reservations" aria-current="page">Bookings</a>' in page.text
    assert ">Settings</a>" in page.text
    settings = await admin_client.get("/settings/api-keys")
    assert 'href="/bookings/reservations"' in settings.text


async def test_upcoming_first_soonest_at_the_top_then_past_latest_first(
    client: Client, app: Litestar, studio: Staff
) -> None:
    massage, yoga = await two_services(app, studio)
    await add_reservation(app, studio, massage, local(days_ahead(3), "10:00"), customer_name="Customer C")
    await add_reservation(app, studio, yoga, local(days_ahead(1), "09:00"), customer_name="Customer A")
    await add_reservation(app, studio, massage, local(days_ahead(-2), "10:00"), customer_name="Customer Y")
    await add_reservation(app, studio, massage, local(days_ahead(-1), "10:00"), customer_name="Customer X")
    await add_reservation(app, studio, yoga, local(days_ahead(2), "09:00"), customer_name="Customer B")
    await sign_in(client, studio.staff)  # any staff member, not only admins
    page = await client.get(PAGE)
    assert page.status_code == 200
    assert customers(page.text) == ["Customer A", "Customer B", "Customer C", "Customer X", "Customer Y"]
    assert page.text.index("Customer C") < page.text.index(">Past<") < page.text.index("Customer X")


async def test_each_row_says_when_what_who_and_which_key(
    client: Client, app: Litestar, studio: Staff
) -> None:
    massage, _yoga = await two_services(app, studio)
    key = await make_key(app, studio)
    key_id = await key_id_of(app, key)
    day = days_ahead(4)
    await add_reservation(
        app, studio, massage, local(day, "14:30"), api_key_id=key_id, customer_name="Customer K"
    )
    await add_reservation(app, studio, massage, local(day, "16:00"), party_size=1, customer_name="Customer D")
    await sign_in(client, studio.admin)
    html = (await client.get(PAGE)).text
    when = local(day, "14:30")
    expected = f"{when:%a} {when.day} {when:%b %Y}, 14:30 {when.tzname()}"  # on the studio's London clock
    assert expected in html
    assert "Massage" in html and "ada@example.com" in html and "Confirmed" in html
    assert f"Test key<br><code>{key[:14]}...</code>" in html
    assert key not in html  # never the full key
    deleted = html[html.index("Customer D") :]
    assert "Deleted key" in deleted[: deleted.index("</tr>")]


async def test_only_the_organizations_own_reservations(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    (theirs,) = await add_services(app, other_studio, service_row(other_studio, name="Their service"))
    await add_reservation(
        app, other_studio, theirs, local(days_ahead(1), "10:00"), customer_name="Customer Z"
    )
    await sign_in(client, studio.admin)
    page = await client.get(PAGE)
    assert customers(page.text) == [] and "No reservations" in page.text
    assert "Their service" not in page.text


async def test_filter_by_date_and_service(client: Client, app: Litestar, studio: Staff) -> None:
    massage, yoga = await two_services(app, studio)
    day = days_ahead(2)
    await add_reservation(app, studio, massage, local(day, "09:00"), customer_name="Customer M1")
    await add_reservation(app, studio, yoga, local(day, "23:30"), customer_name="Customer Y1")
    await add_reservation(
        app, studio, massage, local(day + timedelta(days=1), "00:30"), customer_name="Customer M2"
    )
    await sign_in(client, studio.staff)

    full = await client.get(PAGE, params={"date": day.isoformat(), "service": ""})
    assert full.status_code == 200 and "<html" in full.text
    assert customers(full.text) == ["Customer M1", "Customer Y1"]  # the studio's own calendar day
    assert f'value="{day.isoformat()}"' in full.text

    partial = await client.get(
        PAGE, params={"date": day.isoformat(), "service": str(massage.id)}, headers=TABLE
    )
    assert partial.status_code == 200 and "<html" not in partial.text
    assert customers(partial.text) == ["Customer M1"]
    only_yoga = await client.get(PAGE, params={"service": str(yoga.id)}, headers=TABLE)
    assert customers(only_yoga.text) == ["Customer Y1"]
    empty = await client.get(PAGE, params={"date": (day + timedelta(days=9)).isoformat()}, headers=TABLE)
    assert customers(empty.text) == [] and "match these filters" in empty.text
    # The filter form works with HTMX and without it.
    assert 'hx-get="/bookings/reservations"' in full.text and 'hx-target="#reservations-body"' in full.text
    assert 'hx-push-url="true"' in full.text and 'method="get"' in full.text


async def test_bad_filters_are_explained(client: Client, app: Litestar, studio: Staff) -> None:
    await sign_in(client, studio.staff)
    page = await client.get(PAGE, params={"date": "31/12/2030"})
    assert page.status_code == 422 and "Enter a date as YYYY-MM-DD." in page.text
    partial = await client.get(PAGE, params={"service": "massage"}, headers=TABLE)
    assert partial.status_code == 422 and "Choose a service from the list." in partial.text


async def test_signed_out_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = await client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fbookings%2Freservations"


async def test_a_deleted_keys_reservations_stay_listed(client: Client, app: Litestar, studio: Staff) -> None:
    massage, _yoga = await two_services(app, studio)
    key = await make_key(app, studio)
    await add_reservation(
        app,
        studio,
        massage,
        local(days_ahead(1), "10:00"),
        api_key_id=await key_id_of(app, key),
        customer_name="Customer Q",
    )
    async with transaction(alchemy_of(app)) as session:
        await session.execute(ApiKey.__table__.delete())
    await sign_in(client, studio.admin)
    html = (await client.get(PAGE)).text
    assert customers(html) == ["Customer Q"] and "Deleted key" in html


async def test_a_reservation_has_a_detail_page_with_phone_and_notes(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    massage, _ = await two_services(app, studio)
    mine = await add_reservation(
        app,
        studio,
        massage,
        local(days_ahead(2), "11:00"),
        customer_name="Customer P",
        customer_phone="+44 1632 960123",
        notes="Allergic to lavender oil.\nPrefers the ground floor.",
    )
    [theirs_service] = await add_services(app, other_studio, service_row(other_studio, name="Theirs"))
    theirs = await add_reservation(app, other_studio, theirs_service, local(days_ahead(2), "11:00"))
    await sign_in(client, studio.staff)
    listing = await client.get(PAGE)
    assert f'href="/bookings/reservations/{mine.public_id}"' in listing.text
    page = await client.get(f"{PAGE}/{mine.public_id}")
    assert page.status_code == 200
    assert '<a href="tel:+441632960123">+44 1632 960123</a>' in page.text
    assert "Allergic to lavender oil.\nPrefers the ground floor." in page.text
    assert "Massage" in page.text and mine.public_id in page.text
    assert (await client.get(f"{PAGE}/{theirs.public_id}")).status_code == 404  # another studio's
    assert (await client.get(f"{PAGE}/no-such-reservation")).status_code == 404


# --- Cancelling -------------------------------------------------------------------------------------


async def cancel_on_page(client: Client, reservation_id: str, *, htmx: bool) -> Any:
    await client.get(PAGE)  # the CSRF cookie
    return await client.post(
        f"{PAGE}/{reservation_id}/cancel",
        data={"_csrf_token": csrf_token(client)},
        headers={"HX-Request": "true", "HX-Target": f"reservation-{reservation_id}"} if htmx else {},
        follow_redirects=False,
    )


async def status_of(app: Litestar, reservation_id: str) -> str:
    async with transaction(alchemy_of(app)) as session:
        return str(
            await session.scalar(select(Reservation.status).where(Reservation.public_id == reservation_id))
        )


async def test_staff_cancel_with_htmx_and_see_it_cancelled(
    client: Client, app: Litestar, studio: Staff
) -> None:
    massage, _yoga = await two_services(app, studio)
    upcoming = await add_reservation(
        app, studio, massage, local(days_ahead(2), "10:00"), customer_name="Customer U"
    )
    past = await add_reservation(
        app, studio, massage, local(days_ahead(-1), "10:00"), customer_name="Customer P"
    )
    await sign_in(client, studio.staff)
    page = (await client.get(PAGE)).text
    assert f'action="{PAGE}/{upcoming.public_id}/cancel"' in page
    assert f"{PAGE}/{past.public_id}/cancel" not in page  # what is over cannot be cancelled

    swapped = await cancel_on_page(client, upcoming.public_id, htmx=True)
    assert swapped.status_code == 200 and "<html" not in swapped.text
    assert swapped.text.lstrip().startswith(f'<tr id="reservation-{upcoming.public_id}">')
    assert "Cancelled" in swapped.text and "/cancel" not in swapped.text
    assert "cancelled" in swapped.headers["hx-trigger"]
    assert await status_of(app, upcoming.public_id) == "cancelled"
    listed = (await client.get(PAGE)).text
    assert "Customer U" in listed and ">Cancelled<" in listed  # still listed, as cancelled


async def test_staff_cancel_with_a_plain_form(client: Client, app: Litestar, studio: Staff) -> None:
    massage, _yoga = await two_services(app, studio)
    upcoming = await add_reservation(
        app, studio, massage, local(days_ahead(2), "10:00"), customer_name="Customer U"
    )
    await sign_in(client, studio.staff)
    response = await cancel_on_page(client, upcoming.public_id, htmx=False)
    assert response.status_code == 303 and response.headers["location"] == PAGE
    assert await status_of(app, upcoming.public_id) == "cancelled"


async def test_a_started_reservation_is_explained_not_cancelled(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    massage, _yoga = await two_services(app, studio)
    start = local(days_ahead(2), "10:00")
    upcoming = await add_reservation(app, studio, massage, start, customer_name="Customer U")
    await sign_in(client, studio.staff)
    await client.get(PAGE)
    clock.advance(start.astimezone(UTC) - clock() + timedelta(minutes=5))
    plain = await cancel_on_page(client, upcoming.public_id, htmx=False)
    assert plain.status_code == 409 and "already started" in plain.text and "<html" in plain.text
    swapped = await cancel_on_page(client, upcoming.public_id, htmx=True)
    assert "already started" in swapped.headers["hx-trigger"] and "/cancel" not in swapped.text
    assert await status_of(app, upcoming.public_id) == "confirmed"


async def test_staff_cannot_cancel_another_organizations_reservation(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    (theirs,) = await add_services(app, other_studio, service_row(other_studio, name="Their service"))
    reservation = await add_reservation(app, other_studio, theirs, local(days_ahead(1), "10:00"))
    await sign_in(client, studio.admin)
    for htmx in (True, False):
        assert (await cancel_on_page(client, reservation.public_id, htmx=htmx)).status_code == 404
    assert await status_of(app, reservation.public_id) == "confirmed"
