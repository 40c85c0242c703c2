"""What `make run` adds for the booking widget: its files, the demo website's key, and the website itself.
The widget's behaviour in a browser is tests/browser/test_widget.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import devsite
from app.db import transaction
from app.demo import DEMO_SITE_ORIGIN, DEMO_WIDGET_KEY, seed_demo
from app.domain.api_keys import rules
from tests.api_helpers import assert_problem, bearer
from tests.conftest import alchemy_of

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
