"""The customer's manage link: the page behind it, cancelling within the service's notice, and the token."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.booking.models import IdempotencyRecord, Reservation, Service
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.api_helpers import bearer, make_key
from tests.booking_helpers import bookable_service, booking, days_ahead, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
RESERVATIONS = "/api/v1/reservations"


async def booked(
    client: Client, app: Litestar, studio: Staff, start: datetime, **overrides: Any
) -> dict[str, Any]:
    service = await bookable_service(app, studio, **overrides)
    key = await make_key(app, studio)
    response = await client.post(
        RESERVATIONS, json=booking(service, start), headers=bearer(key, **{"Idempotency-Key": "k"})
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def path_of(manage_url: str) -> str:
    parts = urlsplit(manage_url)
    return f"{parts.path}?{parts.query}"


def token_of(manage_url: str) -> str:
    return parse_qs(urlsplit(manage_url).query)["token"][0]


async def stored(app: Litestar, reservation_id: str) -> Reservation:
    async with transaction(alchemy_of(app)) as session:
        reservation = await session.scalar(select(Reservation).where(Reservation.public_id == reservation_id))
    assert reservation is not None
    return reservation


async def cancel_on_page(client: Client, token: str) -> Any:
    return await client.post(
        "/manage/cancel", data={"token": token, "_csrf_token": csrf_token(client)}, follow_redirects=False
    )


async def test_the_token_is_unguessable_and_only_its_hash_is_stored(
    client: Client, app: Litestar, studio: Staff
) -> None:
    created = await booked(client, app, studio, local(days_ahead(3), "10:00"))
    token = token_of(created["manage_url"])
    assert len(token) >= 22 and len(token) == 43  # 256 bits, base64url
    reservation = await stored(app, created["id"])
    assert reservation.manage_token_hash == hashlib.sha256(token.encode()).hexdigest()
    async with transaction(alchemy_of(app)) as session:
        records = (await session.scalars(select(IdempotencyRecord))).all()
    assert records and all(token not in (record.response_body or "") for record in records)
    # A replay shows the same link again.
    fetched = await client.get(f"{RESERVATIONS}/{created['id']}", headers=bearer(await make_key(app, studio)))
    assert fetched.status_code == 200 and fetched.json()["manage_url"] == created["manage_url"]


async def test_the_customer_sees_and_cancels_their_booking(
    client: Client, app: Litestar, studio: Staff
) -> None:
    start = local(days_ahead(3), "10:00")
    created = await booked(client, app, studio, start)
    page = await client.get(path_of(created["manage_url"]))
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "strict-origin-when-cross-origin"  # never the token elsewhere
    assert "Massage" in page.text and "Grace Hopper" in page.text and "Cancel my booking" in page.text
    assert "grace@example.com" not in page.text  # the page shows what the customer needs, no more

    response = await cancel_on_page(client, token_of(created["manage_url"]))
    assert response.status_code == 303
    after = await client.get(response.headers["location"])
    assert "Your booking is cancelled" in after.text and "Cancel my booking" not in after.text
    reservation = await stored(app, created["id"])
    assert (
        reservation.status == "cancelled" and reservation.cancellation_reason == "Cancelled by the customer"
    )
    # Again: nothing changes.
    assert (await cancel_on_page(client, token_of(created["manage_url"]))).status_code == 303


async def test_inside_the_cancellation_notice_the_page_says_to_call(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    start = local(days_ahead(3), "10:00")
    created = await booked(client, app, studio, start, cancellation_notice_minutes=120)
    token = token_of(created["manage_url"])
    clock.advance(start.astimezone(UTC) - clock() - timedelta(minutes=121))
    assert "Cancel my booking" in (await client.get(path_of(created["manage_url"]))).text
    clock.advance(timedelta(minutes=2))  # now 119 minutes before the start
    page = await client.get(path_of(created["manage_url"]))
    assert "Cancel my booking" not in page.text and f"please call {studio.organization.name}" in page.text
    refused = await cancel_on_page(client, token)
    assert refused.status_code == 409 and "too close to the start" in refused.text
    assert (await stored(app, created["id"])).status == "confirmed"


async def test_the_default_notice_is_24_hours(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    start = local(days_ahead(3), "10:00")
    clock.set(start - timedelta(hours=6))
    created = await booked(client, app, studio, start)
    page = await client.get(path_of(created["manage_url"]))
    assert "please call" in page.text and "Cancel my booking" not in page.text
    async with transaction(alchemy_of(app)) as session:
        notice = await session.scalar(select(Service.cancellation_notice_minutes))
    assert notice == 24 * 60


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "A" * 44])
async def test_a_wrong_token_is_404(client: Client, app: Litestar, studio: Staff, token: str) -> None:
    await booked(client, app, studio, local(days_ahead(3), "10:00"))
    assert (await client.get("/manage", params={"token": token})).status_code == 404
    await client.get("/login")  # a CSRF cookie
    assert (await cancel_on_page(client, token)).status_code == 404
