"""Staff sign-in, sign-out, sessions and CSRF on the pages."""

from __future__ import annotations

from dataclasses import replace

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.settings import Settings
from tests.fixtures.app import client_for
from tests.fixtures.server import free_port
from tests.fixtures.staff import PASSWORD, Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def test_sign_in_page_has_the_documented_fields(client: Client) -> None:
    response = await client.get("/login")
    assert response.status_code == 200
    assert 'name="email"' in response.text
    assert 'name="password"' in response.text
    assert 'name="_csrf_token"' in response.text


async def test_visitor_is_sent_to_sign_in_and_back(client: Client, studio: Staff) -> None:
    response = await client.get("/settings/api-keys", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fsettings%2Fapi-keys"

    login = await client.get(response.headers["location"])
    assert 'name="next" value="/settings/api-keys"' in login.text
    signed_in = await client.post(
        "/login",
        data={
            "email": studio.admin.email,
            "password": PASSWORD,
            "next": "/settings/api-keys",
            "_csrf_token": csrf_token(client),
        },
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/settings/api-keys"
    page = await client.get("/settings/api-keys")
    assert page.status_code == 200
    assert "API Keys" in page.text


async def test_htmx_request_without_session_redirects_the_browser(client: Client) -> None:
    response = await client.get("/settings/api-keys/new", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith("/login?next=")


async def test_wrong_credentials_get_one_generic_message(client: Client, studio: Staff) -> None:
    await client.get("/login")
    wrong_password = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": "nope-nope", "_csrf_token": csrf_token(client)},
    )
    unknown_email = await client.post(
        "/login",
        data={"email": "nobody@example.com", "password": PASSWORD, "_csrf_token": csrf_token(client)},
    )
    for response in (wrong_password, unknown_email):
        assert response.status_code == 400
        assert "Incorrect email or password." in response.text
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 303


async def test_email_is_case_insensitive(client: Client, studio: Staff) -> None:
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": studio.admin.email.upper(), "password": PASSWORD, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303


async def test_next_never_leaves_the_site(client: Client, studio: Staff) -> None:
    await client.get("/login")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = await client.post(
            "/login",
            data={
                "email": studio.admin.email,
                "password": PASSWORD,
                "next": target,
                "_csrf_token": csrf_token(client),
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/"


async def test_session_cookie_is_httponly_and_lax(client: Client, studio: Staff) -> None:
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    cookie = next(value for value in response.headers.get_list("set-cookie") if value.startswith("session="))
    attributes = cookie.lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes  # dev serves plain http


async def test_session_cookie_is_secure_in_production(settings: Settings, studio: Staff) -> None:
    app = create_app(replace(settings, app_env="production"))
    async with AsyncTestClient(app, base_url="https://testserver.local") as client:
        await client.get("/login")
        response = await client.post(
            "/login",
            data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
            follow_redirects=False,
        )
        cookie = next(
            value for value in response.headers.get_list("set-cookie") if value.startswith("session=")
        )
        assert "secure" in cookie.lower()


async def test_sign_in_requires_csrf_token(client: Client, studio: Staff) -> None:
    await client.get("/login")
    response = await client.post("/login", data={"email": studio.admin.email, "password": PASSWORD})
    assert response.status_code == 403
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 303


async def test_a_csrf_token_that_is_not_ascii_is_refused_not_an_error(client: Client, studio: Staff) -> None:
    # Header and cookie bytes arrive as latin-1 text; a constant-time compare of such text raises.
    forged = "\u00e9".encode("latin-1") * 96
    page = await client.get("/login", headers={"cookie": b"csrftoken=" + forged})
    assert page.status_code == 200 and "csrftoken" in page.headers.get("set-cookie", "")
    await client.get("/login")
    refused = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": PASSWORD},
        headers={"x-csrftoken": forged},
    )
    assert refused.status_code == 403
    with_cookie = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
        headers={"cookie": b"csrftoken=" + forged},
    )
    assert with_cookie.status_code == 403


async def test_sign_out_ends_the_session(client: Client, studio: Staff) -> None:
    await sign_in(client, studio.admin)
    response = await client.post("/logout", data={"_csrf_token": csrf_token(client)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 303


async def test_sign_out_requires_csrf_token(client: Client, studio: Staff) -> None:
    await sign_in(client, studio.admin)
    response = await client.post("/logout")
    assert response.status_code == 403
    assert (await client.get("/settings/api-keys")).status_code == 200


async def test_sign_in_rotates_the_session_id(client: Client, studio: Staff) -> None:
    await client.get("/login")
    client.cookies.set("session", "a" * 64, domain="testserver.local")  # an id planted before sign-in
    response = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    new_id = response.cookies.get("session")
    assert new_id and new_id != "a" * 64
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 200
    # Whoever planted the old id holds nothing.
    client.cookies.delete("session")
    client.cookies.set("session", "a" * 64, domain="testserver.local")
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 303


async def test_repeated_failures_are_throttled_per_account_and_address(client: Client, studio: Staff) -> None:
    await client.get("/login")
    for _ in range(5):
        failed = await client.post(
            "/login",
            data={"email": studio.admin.email, "password": "wrong-guess", "_csrf_token": csrf_token(client)},
        )
        assert failed.status_code == 400
    throttled = await client.post(
        "/login", data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)}
    )
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text
    assert 1 <= int(throttled.headers["retry-after"]) <= 15 * 60
    # Another account from the same address is not locked out by these failures.
    other = await client.post(
        "/login",
        data={"email": studio.staff.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert other.status_code == 303


async def test_a_successful_sign_in_clears_earlier_failures(client: Client, studio: Staff) -> None:
    await client.get("/login")
    for _ in range(4):
        await client.post(
            "/login",
            data={"email": studio.admin.email, "password": "wrong-guess", "_csrf_token": csrf_token(client)},
        )
    await sign_in(client, studio.admin)
    for _ in range(4):
        response = await client.post(
            "/login",
            data={"email": studio.admin.email, "password": "wrong-guess", "_csrf_token": csrf_token(client)},
        )
        assert response.status_code == 400


async def test_sign_in_without_redis_is_refused_with_a_message_not_a_500(
    settings: Settings, studio: Staff
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with client_for(replace(settings, redis_url=unreachable)) as client:
        assert (await client.get("/login")).status_code == 200  # the form needs no Redis
        response = await client.post(
            "/login",
            data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
            follow_redirects=False,
        )
    assert response.status_code == 503
    assert "Sign-in is unavailable for a moment" in response.text
    assert response.headers["retry-after"] == "5"
