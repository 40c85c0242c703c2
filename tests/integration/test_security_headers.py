"""Security headers: a strict CSP without inline script on the pages, and the usual hardening headers."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api_helpers import bearer, make_key
from tests.conftest import Staff

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
