"""Security headers: a strict CSP without inline script on the pages, and the usual hardening headers."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.settings import Settings
from tests.api_helpers import bearer, make_key
from tests.fixtures.app import dispose_engines
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def test_pages_send_a_strict_csp_and_have_no_inline_script(admin_client: Client) -> None:
    for url in ("/settings/api-keys", "/settings/api-keys/new", "/login"):
        response = await admin_client.get(url)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert response.headers["x-frame-options"] == "DENY"
        # Every <script> loads a file; none carries code, and no element has an inline handler.
        for script in re.findall(r"<script\b[^>]*>(.*?)</script>", response.text, re.S):
            assert script.strip() == ""
        assert not re.search(r"\son[a-z]+=", response.text)
        assert "style=" not in response.text


async def test_error_pages_and_api_responses_carry_the_headers(
    client: Client, app: Litestar, studio: Staff
) -> None:
    missing = await client.get("/no-such-page")
    assert missing.status_code == 404
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    key = await make_key(app, studio)
    api = await client.get("/api/v1/services", headers=bearer(key))
    assert api.headers["x-content-type-options"] == "nosniff"
    docs = await client.get("/api/docs")
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


async def test_production_sends_hsts_for_a_year_on_every_response(settings: Settings, studio: Staff) -> None:
    app = create_app(replace(settings, app_env="production"))
    key = await make_key(app, studio)
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        responses = [
            await client.get("/login"),
            await client.get("/health"),
            await client.get("/api/v1/services", headers=bearer(key)),
            await client.get("/api/v1/services"),  # a refusal too
        ]
    await dispose_engines(app)
    for response in responses:
        value = response.headers["strict-transport-security"]
        max_age = int(re.search(r"max-age=(\d+)", value).group(1))  # type: ignore[union-attr]
        assert max_age >= 365 * 24 * 3600
        assert "includesubdomains" in value.lower()


async def test_development_sends_no_hsts(client: Client) -> None:
    # Plain http on localhost: pinning it to https would break every other local project.
    assert "strict-transport-security" not in (await client.get("/login")).headers
