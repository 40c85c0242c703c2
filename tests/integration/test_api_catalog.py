"""GET /api/v1/services and /packages: the organization's active catalog, paginated, documented."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api_helpers import add_package, add_services, assert_problem, bearer, make_key, service_row
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def collect(client: Client, url: str, key: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(url, params=params, headers=bearer(key))).json()
        items += page["data"]
        assert len(page["data"]) <= limit
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return items
        cursor = page["next_cursor"]
        assert cursor
    raise AssertionError("pagination did not end")


async def test_services_are_the_organizations_active_ones(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    massage, yoga, _retired = await add_services(
        app,
        studio,
        service_row(studio, name="Massage"),
        service_row(studio, name="Yoga", duration_minutes=75, capacity=12, price_amount=1500),
        service_row(studio, name="Retired", is_active=False),
    )
    (theirs,) = await add_services(app, other_studio, service_row(other_studio, name="Theirs"))
    key = await make_key(app, studio)

    listed = (await client.get("/api/v1/services", headers=bearer(key))).json()
    assert [item["name"] for item in listed["data"]] == ["Massage", "Yoga"]
    assert listed["has_more"] is False and listed["next_cursor"] is None
    yoga_out = listed["data"][1]
    assert yoga_out == {
        "id": str(yoga.id),
        "name": "Yoga",
        "description": "",
        "duration_minutes": 75,
        "price": {"amount": 1500, "currency": "GBP"},
        "capacity": 12,
        "slot_interval_minutes": 30,
        "min_notice_minutes": 0,
        "booking_horizon_days": 60,
        "buffer_before_minutes": 0,
        "buffer_after_minutes": 0,
        "cancellation_notice_minutes": 24 * 60,
    }
    one = await client.get(f"/api/v1/services/{massage.id}", headers=bearer(key))
    assert one.status_code == 200 and one.json()["name"] == "Massage"
    for other_id in (theirs.id, _retired.id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert_problem(
            await client.get(f"/api/v1/services/{other_id}", headers=bearer(key)), 404, "not_found"
        )


async def test_packages_list_their_services(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    massage, yoga = await add_services(
        app, studio, service_row(studio, name="Massage"), service_row(studio, name="Yoga")
    )
    five = await add_package(app, studio, [massage], name="5 Massage Package")
    await add_package(app, studio, [yoga], name="Old pass", is_active=False)
    (their_service,) = await add_services(app, other_studio, service_row(other_studio))
    theirs = await add_package(app, other_studio, [their_service], name="Theirs")
    key = await make_key(app, studio, scopes=("read",))

    listed = (await client.get("/api/v1/packages", headers=bearer(key))).json()
    assert listed["data"] == [
        {
            "id": str(five.id),
            "name": "5 Massage Package",
            "description": "",
            "service_ids": [str(massage.id)],
            "session_count": 5,
            "validity_days": 180,
            "price": {"amount": 30000, "currency": "GBP"},
        }
    ]
    assert (await client.get(f"/api/v1/packages/{five.id}", headers=bearer(key))).json()[
        "name"
    ] == "5 Massage Package"
    assert_problem(await client.get(f"/api/v1/packages/{theirs.id}", headers=bearer(key)), 404, "not_found")


async def test_cursor_pagination_visits_every_item_once(client: Client, app: Litestar, studio: Staff) -> None:
    await add_services(app, studio, *(service_row(studio, name=f"Service {n:02}") for n in range(7)))
    key = await make_key(app, studio)
    for limit in (1, 3, 7, 100):
        names = [item["name"] for item in await collect(client, "/api/v1/services", key, limit)]
        assert names == [f"Service {n:02}" for n in range(7)]
    first = (await client.get("/api/v1/services", params={"limit": 3}, headers=bearer(key))).json()
    assert first["has_more"] is True and len(first["data"]) == 3
    default = (await client.get("/api/v1/services", headers=bearer(key))).json()
    assert len(default["data"]) == 7


async def test_default_limit_is_50(client: Client, app: Litestar, studio: Staff) -> None:
    await add_services(app, studio, *(service_row(studio, name=f"S{n}") for n in range(51)))
    key = await make_key(app, studio)
    page = (await client.get("/api/v1/services", headers=bearer(key))).json()
    assert len(page["data"]) == 50 and page["has_more"] is True


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        ("limit=0", "/limit"),
        ("limit=101", "/limit"),
        ("limit=ten", "/limit"),
        ("cursor=%%%", "/cursor"),
        ("cursor=abc", "/cursor"),
    ],
)
async def test_bad_paging_parameters_are_422_with_pointers(
    client: Client, app: Litestar, studio: Staff, query: str, pointer: str
) -> None:
    key = await make_key(app, studio)
    body = assert_problem(
        await client.get(f"/api/v1/services?{query}", headers=bearer(key)), 422, "validation_error"
    )
    assert [error["pointer"] for error in body["errors"]] == [pointer]
    assert body["errors"][0]["detail"]


async def test_openapi_documents_v1(client: Client) -> None:
    schema = (await client.get("/api/docs/openapi.json")).json()
    assert {
        "/api/v1/services",
        "/api/v1/services/{service_id}",
        "/api/v1/packages",
        "/api/v1/packages/{package_id}",
    } <= set(schema["paths"])
    assert not any(path.startswith(("/settings", "/login", "/health")) for path in schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerKey"]["scheme"] == "bearer"
    assert schemes["headerKey"]["name"] == "X-API-Key"
    operation = schema["paths"]["/api/v1/services"]["get"]
    assert {"bearerKey": []} in operation["security"]
    for status in ("401", "403", "422", "429"):
        content = operation["responses"][status]["content"]
        assert "application/problem+json" in content
    headers = operation["responses"]["200"]["headers"]
    assert {"RateLimit", "RateLimit-Policy", "X-RateLimit-Remaining", "X-Request-Id"} <= set(headers)
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(problem["properties"])


async def test_interactive_docs_are_linked_from_the_settings_page(admin_client: Client) -> None:
    docs = await admin_client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    settings_page = await admin_client.get("/settings/api-keys")
    assert 'href="/api/docs"' in settings_page.text
