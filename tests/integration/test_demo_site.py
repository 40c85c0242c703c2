"""What `make run` adds for the booking widget: its files, the demo website's key, and the website itself.
The widget's behaviour in a browser is tests/browser/test_widget.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app import devsite
from app.demo import DEMO_SITE_ORIGIN, DEMO_WEBHOOK_URL, DEMO_WIDGET_KEY, demo_webhook_secret, seed_demo
from app.domain.api_keys import rules
from app.domain.webhooks import outbox
from app.domain.webhooks import rules as rules_webhooks
from app.domain.webhooks.models import WebhookEndpoint
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.api_helpers import assert_problem, bearer
from tests.fixtures.app import alchemy_of
from tests.webhook_helpers import deliverer

Client = AsyncTestClient[Litestar]
API_URL = "http://127.0.0.1:8123"


@pytest.mark.anyio
async def test_the_widget_files_are_served_to_any_site(client: Client) -> None:
    script = await client.get("/static/widget/booking.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "Idempotency-Key" in script.text
    stylesheet = await client.get("/static/widget/booking.css")
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"].startswith("text/css")
    # No session cookie or page policy on them: they are loaded by other origins' pages.
    assert "set-cookie" not in script.headers
    assert "content-security-policy" not in script.headers


@pytest.mark.anyio
async def test_the_demo_widget_key_is_seeded_for_the_demo_website_only(client: Client, app: Litestar) -> None:
    assert rules.is_well_formed(DEMO_WIDGET_KEY)
    async with transaction(alchemy_of(app)) as session:
        await seed_demo(session)
    allowed = await client.get("/api/v1/services", headers=bearer(DEMO_WIDGET_KEY, Origin=DEMO_SITE_ORIGIN))
    assert allowed.status_code == 200 and allowed.json()["data"]
    elsewhere = await client.get(
        "/api/v1/services", headers=bearer(DEMO_WIDGET_KEY, Origin="http://localhost:8001")
    )
    assert_problem(elsewhere, 403, "origin_not_allowed")
    # The widget books, so the key has the Write scope: a booking gets past the scope check to validation.
    booking = await client.post(
        "/api/v1/reservations",
        json={},
        headers=bearer(DEMO_WIDGET_KEY, Origin=DEMO_SITE_ORIGIN, **{"Idempotency-Key": "k1"}),
    )
    assert_problem(booking, 422, "validation_error")


@pytest.fixture
def site() -> Iterator[devsite.DemoSiteServer]:
    server = devsite.start(API_URL, "qv_pk_<key>")
    yield server
    server.shutdown()
    server.server_close()


def test_the_demo_website_embeds_the_widget_under_a_strict_policy(site: devsite.DemoSiteServer) -> None:
    page = httpx.get(site.url)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert f'src="{API_URL}/static/widget/booking.js"' in page.text
    assert f'data-api="{API_URL}"' in page.text
    assert 'data-key="qv_pk_&lt;key&gt;"' in page.text  # filled in escaped
    assert "Email us to book" in page.text  # what visitors without JavaScript get
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' {API_URL};" in policy
    assert f"style-src 'self' {API_URL};" in policy
    assert f"connect-src {API_URL};" in policy
    assert "unsafe-inline" not in policy

    site.embed("http://127.0.0.1:9999", "qv_pk_other")
    assert 'data-key="qv_pk_other"' in httpx.get(site.url).text
    assert httpx.get(f"{site.url}/site.css").headers["content-type"].startswith("text/css")
    assert httpx.get(f"{site.url}/missing").status_code == 404


@pytest.mark.anyio
async def test_the_demo_website_receives_webhooks_and_verifies_their_signatures(
    client: Client, app: Litestar, clock: SettableClock
) -> None:
    async with transaction(alchemy_of(app)) as session:
        await seed_demo(session)
        assert await seed_demo(session) is False  # the demo endpoint is seeded once
        secret = await demo_webhook_secret(session, app.state.settings.secret_key)
        organization_id = await session.scalar(select(WebhookEndpoint.organization_id))
    assert secret is not None and secret.startswith("whsec_")
    site = devsite.start(API_URL, "qv_pk_<key>", webhook_secret=secret)
    try:
        # The product's own delivery, to the site, signed with the seeded endpoint's secret.
        async with transaction(alchemy_of(app)) as session:
            endpoint = await session.scalar(select(WebhookEndpoint))
            assert endpoint is not None and endpoint.url == DEMO_WEBHOOK_URL
            endpoint.url = f"{site.url}/webhooks"
            assert organization_id is not None
            event = await outbox.record(
                session, organization_id, "test", {"message": "hello"}, clock(), endpoint_ids=[endpoint.id]
            )
        assert event is not None
        async with httpx.AsyncClient() as http_client:
            assert await deliverer(app, clock, http_client).run() == 1
            forged = await http_client.post(
                f"{site.url}/webhooks",
                content=b'{"id":"forged","type":"reservation.created"}',
                headers={
                    "QuickVisit-Signature": rules_webhooks.signature(
                        "whsec_wrong", int(clock().timestamp()), b"x"
                    )
                },
            )
            assert forged.status_code == 200
            page = await http_client.get(f"{site.url}/webhooks")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        rows = page.text.split("<tr>")[2:]
        assert "forged" in rows[0] and "Signature does not match" in rows[0]  # newest first
        assert str(event.id) in rows[1] and "Signature verified" in rows[1]
    finally:
        site.shutdown()
        site.server_close()
