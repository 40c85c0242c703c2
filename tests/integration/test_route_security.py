"""Properties of every route, found by enumerating the app: CSRF on state changes, tenant isolation on ids."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.api.fallback import FALLBACK_OPT_KEY
from app.domain.api_keys.models import LeakedKeyAlert
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import CLI_ACTOR
from app.domain.webhooks import services as webhooks
from app.lib.db import transaction
from tests.api_helpers import add_package, add_services, bearer, key_id_of, make_key, service_row
from tests.booking_helpers import add_reservation, days_ahead, local
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, path template) of every route handler of the app, the API's answers to unknown paths and
    methods (app/api/fallback.py) aside."""
    found = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if handler.opt.get(FALLBACK_OPT_KEY):
                    continue
                for method in handler.http_methods:
                    if method not in ("OPTIONS", "HEAD"):
                        found.append((method, route.path_format))
    return sorted(found)


def fill(path: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda match: values.get(match.group(1), str(uuid.uuid4())), path)


async def test_every_state_changing_page_route_rejects_a_missing_csrf_token(
    admin_client: Client, app: Litestar
) -> None:
    page_routes = [(m, p) for m, p in routes(app) if m in STATE_CHANGING and not p.startswith("/api/")]
    # Signing out ends the session the other checks need: it goes last.
    page_routes.sort(key=lambda route: route[1] == "/logout")
    assert len(page_routes) >= 4, page_routes  # sign-in, sign-out and the key actions at least
    for method, path in page_routes:
        url = fill(path, {})
        without = await admin_client.request(method, url, data={"name": "x"}, headers={"HX-Request": "true"})
        assert without.status_code == 403, (method, path, without.status_code)
        forged = await admin_client.request(
            method, url, data={"name": "x", "_csrf_token": "forged"}, headers={"HX-Request": "true"}
        )
        assert forged.status_code == 403, (method, path, forged.status_code)
        # With the token the same request gets past CSRF (whatever the handler then says), so the 403 was CSRF's.
        with_token = await admin_client.request(
            method,
            url,
            data={"name": "x"},
            headers={"HX-Request": "true", "x-csrftoken": csrf_token(admin_client)},
        )
        assert with_token.status_code != 403 or "CSRF" not in with_token.headers.get("hx-trigger", ""), (
            method,
            path,
        )


async def other_organizations_ids(app: Litestar, other: Staff) -> dict[str, str]:
    """One id of another organization for every kind of id a route takes."""
    (service,) = await add_services(app, other, service_row(other, name="Theirs"))
    package = await add_package(app, other, [service])
    key = await make_key(app, other)
    reservation = await add_reservation(app, other, service, local(days_ahead(2), "10:00"))
    leaked = await key_id_of(app, await make_key(app, other))
    async with transaction(alchemy_of(app)) as session:
        await ApiKeyService(session=session).revoke_found_in_public(
            leaked, url="https://github.com/x", now=datetime.now(UTC)
        )
        alert_id = await session.scalar(select(LeakedKeyAlert.id).where(LeakedKeyAlert.api_key_id == leaked))
        endpoint = await webhooks.add(
            session,
            other.organization.id,
            "http://127.0.0.1:9/theirs",
            ["reservation.created"],
            secret_key="k" * 32,
            production=False,
            actor=CLI_ACTOR,
        )
    return {
        "endpoint_id": str(endpoint.endpoint.id),
        "alert_id": str(alert_id),
        "key_id": str(await key_id_of(app, key)),
        "service_id": str(service.id),
        "package_id": str(package.id),
        "reservation_id": reservation.public_id,
    }


async def test_every_route_with_an_id_answers_404_for_another_organizations_id(
    admin_client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    theirs = await other_organizations_ids(app, other_studio)
    our_key = await make_key(app, studio)
    id_routes = [
        (m, p)
        for m, p in routes(app)
        if PARAM.search(p) and not p.startswith(("/static", "/api/docs", "/widget"))
    ]
    assert id_routes
    for method, path in id_routes:
        names = [match.group(1) for match in PARAM.finditer(path)]
        missing = [name for name in names if name not in theirs]
        assert not missing, f"{method} {path}: add an id of another organization for {missing} to this test"
        url = fill(path, theirs)
        headers: dict[str, Any] = {"HX-Request": "true", "x-csrftoken": csrf_token(admin_client)}
        if path.startswith("/api/"):
            headers |= bearer(our_key) | {"Idempotency-Key": str(uuid.uuid4())}
        response = await admin_client.request(
            method, url, headers=headers, data=None if path.startswith("/api/") else {}
        )
        assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
