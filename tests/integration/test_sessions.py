"""Staff sessions: nothing stored for visitors, no client-chosen ids, a lifetime that holds for busy sessions,
an idle timeout, a sign-out that expires the cookie, and CSRF tokens that are good for one session only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.domain.accounts import sessions
from app.settings import SESSION_LIFETIME_HOURS, Settings
from tests.fixtures.app import client_for
from tests.fixtures.staff import PASSWORD, Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def session_cookies(response: object) -> list[str]:
    return [value for value in response.headers.get_list("set-cookie") if value.startswith("session=")]  # type: ignore[attr-defined]


async def session_keys(redis: Redis) -> list[bytes]:
    return [key for key in await redis.keys("*") if b"session" in key]


async def test_visitors_store_nothing(client: Client, redis: Redis) -> None:
    for _ in range(20):
        response = await client.get("/login")
        assert response.status_code == 200
        assert session_cookies(response) == []
    # A session id of the visitor's choosing is not adopted either: nothing is stored under it.
    client.cookies.set("session", "a" * 64, domain="testserver.local")
    response = await client.get("/login")
    assert response.status_code == 200
    assert await session_keys(redis) == []
    # The made-up cookie is expired rather than kept.
    [expired] = session_cookies(response)
    assert "max-age=0" in expired.lower()
    # A failed sign-in stores nothing either.
    failed = await client.post(
        "/login",
        data={"email": "nobody@example.com", "password": "x" * 10, "_csrf_token": csrf_token(client)},
    )
    assert failed.status_code == 400
    assert await session_keys(redis) == []


async def test_sign_in_stores_one_session_under_a_new_id(client: Client, redis: Redis, studio: Staff) -> None:
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": studio.admin.email, "password": PASSWORD, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    [cookie] = session_cookies(response)
    session_id = re.match(r"session=([0-9a-f]+);", cookie)
    assert session_id
    [key] = await session_keys(redis)
    assert key.decode().endswith(session_id.group(1))
    # Neither the store nor the browser keeps it beyond the idle timeout / the lifetime.
    assert 0 < await redis.ttl(key) <= 60 * 60
    max_age = int(re.search(r"max-age=(\d+)", cookie.lower()).group(1))  # type: ignore[union-attr]
    assert SESSION_LIFETIME_HOURS * 3600 - 60 <= max_age <= SESSION_LIFETIME_HOURS * 3600


async def test_an_active_session_still_ends_after_its_lifetime(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = sessions.now()
    lifetime = SESSION_LIFETIME_HOURS * 3600
    # Busy all day: a request every 50 minutes (inside the idle timeout) ...
    for elapsed in range(50 * 60, lifetime, 50 * 60):
        monkeypatch.setattr(sessions, "now", lambda elapsed=elapsed: started + elapsed)
        page = await admin_client.get("/settings/api-keys", follow_redirects=False)
        assert page.status_code == 200, elapsed
        [cookie] = session_cookies(page)
        max_age = int(re.search(r"max-age=(\d+)", cookie.lower()).group(1))  # type: ignore[union-attr]
        assert max_age <= lifetime - elapsed + 1  # the cookie never outlasts the session
    # ... and still signed out once the lifetime is over.
    monkeypatch.setattr(sessions, "now", lambda: started + lifetime + 1)
    response = await admin_client.get("/settings/api-keys", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_an_idle_session_ends_after_the_idle_timeout(
    admin_client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = sessions.now()
    idle = settings.session_idle_minutes * 60
    monkeypatch.setattr(sessions, "now", lambda: started + idle - 5)
    assert (await admin_client.get("/settings/api-keys", follow_redirects=False)).status_code == 200
    monkeypatch.setattr(sessions, "now", lambda: started + 2 * idle)
    assert (await admin_client.get("/settings/api-keys", follow_redirects=False)).status_code == 303


async def test_sign_out_expires_the_cookie_and_deletes_the_session(
    admin_client: Client, redis: Redis
) -> None:
    assert len(await session_keys(redis)) == 1
    response = await admin_client.post(
        "/logout", data={"_csrf_token": csrf_token(admin_client)}, follow_redirects=False
    )
    assert response.status_code == 303
    [cookie] = session_cookies(response)
    assert "max-age=0" in cookie.lower()
    assert "null" not in cookie
    assert await session_keys(redis) == []


async def test_a_planted_csrf_cookie_with_its_token_fails(admin_client: Client, settings: Settings) -> None:
    # The attacker's own token pair, from their own visit.
    async with client_for(settings) as attacker:
        await attacker.get("/login")
        planted = csrf_token(attacker)
    admin_client.cookies.set("csrftoken", planted, domain="testserver.local")
    forged = await admin_client.post(
        "/settings/api-keys",
        data={"name": "Planted", "scopes": ["read"], "_csrf_token": planted},
        headers=HTMX,
    )
    assert forged.status_code == 403
    forged_header = await admin_client.post(
        "/settings/api-keys",
        data={"name": "Planted", "scopes": ["read"]},
        headers={**HTMX, "x-csrftoken": planted},
    )
    assert forged_header.status_code == 403
    # The page's own token (bound to this session) works, and the key list shows no planted key.
    page = await admin_client.get("/settings/api-keys/new")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token and token.group(1) != planted
    created = await admin_client.post(
        "/settings/api-keys",
        data={"name": "Real", "scopes": ["read"], "_csrf_token": token.group(1)},
        headers=HTMX,
    )
    assert created.status_code == 201
    assert "Planted" not in (await admin_client.get("/settings/api-keys")).text


async def test_a_token_from_another_session_fails(client: Client, settings: Settings, studio: Staff) -> None:
    async with client_for(settings) as other:
        await sign_in(other, studio.staff)
        stolen = csrf_token(other)
    await sign_in(client, studio.admin)
    client.cookies.set("csrftoken", stolen, domain="testserver.local")
    response = await client.post("/logout", data={"_csrf_token": stolen}, follow_redirects=False)
    assert response.status_code == 403
    assert (await client.get("/settings/api-keys", follow_redirects=False)).status_code == 200


async def test_tokens_die_with_the_session(client: Client, studio: Staff) -> None:
    await sign_in(client, studio.admin)
    old = csrf_token(client)
    await client.post("/logout", data={"_csrf_token": old})
    await sign_in(client, studio.admin)
    assert csrf_token(client) != old
    client.cookies.set("csrftoken", old, domain="testserver.local")
    response = await client.post("/logout", data={"_csrf_token": old}, follow_redirects=False)
    assert response.status_code == 403
