"""Hostile input to the Public Booking API (issue 21): every case answers 4xx problem+json with a stable code,
never a 500 or a 503, on SQLite and PostgreSQL alike, and nothing is written."""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.api.v1.schemas import ReservationIn
from app.asgi import create_app
from app.domain.api_keys.models import ApiKey
from app.domain.booking import idempotency
from app.domain.booking.models import IdempotencyRecord, Service
from app.lib.db import transaction
from app.settings import PROJECT_ROOT, Settings
from tests.api_helpers import add_services, assert_problem, bearer, key_id_of, make_key, service_row
from tests.booking_helpers import (
    add_opening_hours,
    booking,
    days_ahead,
    idempotency_records,
    local,
    reservation_count,
)
from tests.fixtures.app import alchemy_of, dispose_engines
from tests.fixtures.staff import Staff, csrf_token
from tests.usage_helpers import counted_requests, eventually, running_worker

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
SERVICES = "/api/v1/services"
RESERVATIONS = "/api/v1/reservations"
AVAILABILITY = "/api/v1/availability"


async def open_studio(app: Litestar, studio: Staff) -> Service:
    await add_opening_hours(app, studio, [("09:00", "17:00")])
    (service,) = await add_services(app, studio, service_row(studio))
    return service


async def post(client: Client, key: str, body: Any, idempotency_key: str = "key-1") -> Any:
    headers = bearer(key, **{"Idempotency-Key": idempotency_key})
    if isinstance(body, bytes):
        return await client.post(
            RESERVATIONS, content=body, headers=headers | {"Content-Type": "application/json"}
        )
    return await client.post(RESERVATIONS, json=body, headers=headers)


def pointers(body: dict[str, Any]) -> list[str]:
    return [error["pointer"] for error in body.get("errors", [])]


async def assert_nothing_written(app: Litestar) -> None:
    assert await reservation_count(app) == 0
    assert await idempotency_records(app) == []


# --- 4. Keys in the query string ---------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["api_key", "key", "access_token", "apiKey", "token"])
async def test_a_key_in_the_query_string_is_refused_with_a_pointer_to_the_header(
    client: Client, app: Litestar, studio: Staff, parameter: str
) -> None:
    key = await make_key(app, studio)
    alone = await client.get(SERVICES, params={parameter: key})
    body = assert_problem(alone, 400, "api_key_in_query")
    assert "Authorization" in body["detail"] and "X-API-Key" in body["detail"]
    assert key not in alone.text
    # Refused even beside a proper header: the URL has leaked the key, the caller must stop doing it.
    both = await client.get(SERVICES, params={parameter: key}, headers=bearer(key))
    assert_problem(both, 400, "api_key_in_query")
    assert (
        "access-control-allow-origin"
        in (
            await client.get(SERVICES, params={parameter: key}, headers={"Origin": "https://shop.example"})
        ).headers
    )


async def test_a_key_under_any_query_parameter_name_is_refused(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio)
    response = await client.get(SERVICES, params={"limit": "5", "credentials": key}, headers=bearer(key))
    assert_problem(response, 400, "api_key_in_query")
    # Ordinary query parameters are unaffected.
    assert (await client.get(SERVICES, params={"limit": "5"}, headers=bearer(key))).status_code == 200


# --- 5. Dates far away, deep JSON --------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "9999-12-31T23:00:00+00:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00+05:00",
        "0001-01-01T09:00:00-14:00",
    ],
)
async def test_a_start_at_the_ends_of_the_calendar_is_refused_not_a_500(
    client: Client, app: Litestar, studio: Staff, start: str
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    response = await post(client, key, booking(service, start))
    assert response.status_code in (409, 422), response.text
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["code"] in ("slot_in_past", "too_early_to_book", "validation_error"), body
    await assert_nothing_written(app)


@pytest.mark.parametrize(
    ("first", "last"),
    [("9999-12-30", "9999-12-31"), ("0001-01-01", "0001-01-02"), ("9999-12-31", "9999-12-31")],
)
async def test_availability_at_the_ends_of_the_calendar_is_a_validation_error(
    client: Client, app: Litestar, studio: Staff, first: str, last: str
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    for zone in (None, "Pacific/Kiritimati", "Etc/GMT+12"):
        params = {"service_id": str(service.id), "start_date": first, "end_date": last}
        if zone:
            params["time_zone"] = zone
        response = await client.get(AVAILABILITY, params=params, headers=bearer(key))
        body = assert_problem(response, 422, "validation_error")
        assert set(pointers(body)) & {"/start_date", "/end_date"}, body


async def test_dates_within_the_window_still_work(client: Client, app: Litestar, studio: Staff) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    response = await client.get(
        AVAILABILITY,
        params={"service_id": str(service.id), "start_date": yesterday, "end_date": yesterday},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text


async def test_a_body_nested_100000_deep_is_a_400(client: Client, app: Litestar, studio: Staff) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    depth = 100_000
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"notes": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}",
        (
            b'{"service_id": "'
            + str(service.id).encode()
            + b'", "extra": '
            + b"[" * depth
            + b"]" * depth
            + b"}"
        ),
    ):
        response = await post(client, key, body)
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"
    await assert_nothing_written(app)


async def test_hostile_input_is_counted_as_client_errors_not_server_errors(
    client: Client, app: Litestar, settings: Settings, studio: Staff
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    async with running_worker(settings):
        statuses = [
            (await post(client, key, booking(service, "9999-12-31T23:00:00+00:00"))).status_code,
            (await post(client, key, b"[" * 100_000 + b"]" * 100_000)).status_code,
            (
                await client.get(
                    AVAILABILITY,
                    params={
                        "service_id": str(service.id),
                        "start_date": "9999-12-30",
                        "end_date": "9999-12-31",
                    },
                    headers=bearer(key),
                )
            ).status_code,
        ]
        assert all(400 <= status < 500 for status in statuses), statuses
        key_id = await key_id_of(app, key)

        async def all_counted() -> bool:
            return await counted_requests(app, key_id=key_id) == 3

        await eventually(all_counted)
    assert await counted_requests(app, key_id=key_id, status_class="4xx") == 3
    assert await counted_requests(app, key_id=key_id, status_class="5xx") == 0


# --- 6. NUL bytes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"customer": {"name": "Ada\x00Lovelace", "email": "ada@example.com"}}, "/customer/name"),
        ({"customer": {"name": "Ada", "email": "ada\x00@example.com"}}, "/customer/email"),
        (
            {"customer": {"name": "Ada", "email": "ada@example.com", "phone": "+44\x001632960123"}},
            "/customer/phone",
        ),
        ({"notes": "ring\x00twice"}, "/notes"),
    ],
)
async def test_a_nul_in_a_booking_is_a_validation_error_with_its_pointer(
    client: Client, app: Litestar, studio: Staff, overrides: dict[str, Any], pointer: str
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    response = await post(client, key, booking(service, local(days_ahead(2), "10:00"), **overrides))
    body = assert_problem(response, 422, "validation_error")
    assert pointer in pointers(body), body
    await assert_nothing_written(app)


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        (f"{RESERVATIONS}/res_%00abcdefghijklmnopqrstuvw", "/reservation_id"),
        (f"{SERVICES}/%00", "/service_id"),
        ("/api/v1/packages/a%00b", "/package_id"),
    ],
)
async def test_a_nul_in_a_path_id_is_a_validation_error(
    client: Client, app: Litestar, studio: Staff, path: str, pointer: str
) -> None:
    key = await make_key(app, studio)
    body = assert_problem(await client.get(path, headers=bearer(key)), 422, "validation_error")
    assert pointers(body) == [pointer]


async def test_a_nul_in_a_query_parameter_is_a_validation_error(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    day = days_ahead(2).isoformat()
    cases = [
        ({"service_id": f"{service.id}\x00", "start_date": day, "end_date": day}, "/service_id"),
        (
            {"service_id": str(service.id), "start_date": day, "end_date": day, "time_zone": "Europe/\x00"},
            "/time_zone",
        ),
    ]
    for params, pointer in cases:
        response = await client.get(AVAILABILITY, params=params, headers=bearer(key))
        body = assert_problem(response, 422, "validation_error")
        assert pointer in pointers(body), body
    listed = await client.get(SERVICES, params={"cursor": "a\x00b"}, headers=bearer(key))
    assert "/cursor" in pointers(assert_problem(listed, 422, "validation_error"))


async def test_a_nul_in_a_key_name_is_a_form_error_not_a_500(admin_client: Client, app: Litestar) -> None:
    form = {
        "name": "Widget\x00",
        "scopes": ["read"],
        "allowed_origins": "",
        "rate_limit_per_minute": "60",
        "expires_in_days": "never",
        "_csrf_token": csrf_token(admin_client),
    }
    response = await admin_client.post(
        "/settings/api-keys", data=form, headers={"HX-Request": "true"}, follow_redirects=False
    )
    assert response.status_code == 422, response.text
    assert "text/html" in response.headers["content-type"]
    assert 'id="name-error"' in response.text
    async with transaction(alchemy_of(app)) as session:
        assert (await session.scalars(select(ApiKey))).all() == []


# --- 5. The staff page --------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2026-01-01\x00"])
async def test_reservations_page_with_a_date_at_the_ends_of_the_calendar_is_a_form_error(
    admin_client: Client, day: str
) -> None:
    response = await admin_client.get("/bookings/reservations", params={"date": day})
    assert response.status_code == 422, response.text
    assert "text/html" in response.headers["content-type"]
    assert "date" in response.text.lower()


# --- 8. Every /api/v1 path goes through the guard ----------------------------------------------------


async def test_unknown_paths_are_guarded_counted_and_problem_json(
    client: Client, app: Litestar, settings: Settings, studio: Staff
) -> None:
    key = await make_key(app, studio, scopes=("write",))
    origin = {"Origin": "https://shop.example"}
    async with running_worker(settings):
        unknown = await client.get("/api/v1/nothing-here", headers=bearer(key, **origin))
        assert_problem(unknown, 404, "not_found")
        assert unknown.headers["access-control-allow-origin"] == "https://shop.example"
        assert "ratelimit-policy" in unknown.headers
        nested = await client.post("/api/v1/a/b/c", headers=bearer(key, **origin))
        assert_problem(nested, 404, "not_found")
        root = await client.get("/api/v1", headers=bearer(key, **origin))
        assert_problem(root, 404, "not_found")
        without_key = await client.get("/api/v1/nothing-here", headers=origin)
        assert_problem(without_key, 401, "missing_api_key")
        assert without_key.headers["access-control-allow-origin"] == "https://shop.example"
        key_id = await key_id_of(app, key)

        async def all_counted() -> bool:
            return await counted_requests(app, key_id=key_id) == 3

        await eventually(all_counted)
    assert await counted_requests(app, key_id=key_id, status_class="4xx") == 3


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", SERVICES, {"GET", "HEAD", "OPTIONS"}),
        ("POST", f"{SERVICES}/{uuid.uuid4()}", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", RESERVATIONS, {"GET", "HEAD", "POST", "OPTIONS"}),
        ("PATCH", f"{RESERVATIONS}/res_abc", {"GET", "HEAD", "OPTIONS"}),
        ("POST", AVAILABILITY, {"GET", "HEAD", "OPTIONS"}),
    ],
)
async def test_unsupported_methods_are_405_with_allow_through_the_guard(
    client: Client, app: Litestar, studio: Staff, method: str, path: str, allowed: set[str]
) -> None:
    key = await make_key(app, studio)
    origin = {"Origin": "https://shop.example"}
    response = await client.request(method, path, headers=bearer(key, **origin))
    assert_problem(response, 405, "method_not_allowed")
    assert {part.strip() for part in response.headers["allow"].split(",")} == allowed
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert "ratelimit-policy" in response.headers
    # Without a key the answer is the guard's 401, CORS headers included.
    anonymous = await client.request(method, path, headers=origin)
    assert_problem(anonymous, 401, "missing_api_key")


async def test_head_is_served_where_get_is(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    got = await client.get(SERVICES, headers=bearer(key))
    head = await client.head(SERVICES, headers=bearer(key))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert "ratelimit-policy" in head.headers
    missing = await client.head(f"{SERVICES}/{uuid.uuid4()}", headers=bearer(key))
    assert missing.status_code == 404 and missing.content == b""


# --- 9. Strict types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"party_size": "2"}, "/party_size"),
        ({"party_size": 2.0}, "/party_size"),
        ({"party_size": True}, "/party_size"),
        ({"start": 1796000000}, "/start"),
        ({"start": 1796000000.5}, "/start"),
        ({"service_id": 12}, "/service_id"),
        ({"notes": 5}, "/notes"),
    ],
)
async def test_request_bodies_are_strictly_typed(
    client: Client, app: Litestar, studio: Staff, overrides: dict[str, Any], pointer: str
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    response = await post(client, key, booking(service, local(days_ahead(2), "10:00")) | overrides)
    body = assert_problem(response, 422, "validation_error")
    assert pointers(body) == [pointer], body
    await assert_nothing_written(app)


# --- 10. Errors the framework raises are problem+json with stable codes ------------------------------


async def test_a_body_over_the_limit_is_413_payload_too_large(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio)
    response = await post(client, key, b'{"notes": "' + b"x" * (11 * 1024 * 1024) + b'"}')
    assert_problem(response, 413, "payload_too_large")


async def test_the_guards_503_has_retry_after(settings: Settings, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broken = create_app(replace(settings, database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{port}/none"))
    async with AsyncTestClient(broken) as broken_client:
        response = await broken_client.get(SERVICES, headers=bearer(key))
    await dispose_engines(broken)
    assert_problem(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) >= 1


async def test_every_code_is_documented_in_the_openapi_schema_and_the_readme(client: Client) -> None:
    schema = (await client.get("/api/docs/openapi.json")).text
    readme = (PROJECT_ROOT / "README.md").read_text()
    for code in (
        "internal_error",
        "method_not_allowed",
        "payload_too_large",
        "bad_request",
        "api_key_in_query",
        "service_unavailable",
    ):
        assert f"`{code}`" in schema, code
        assert f"`{code}`" in readme, code


# --- 11. The idempotency lease -----------------------------------------------------------------------


async def test_a_key_claimed_by_a_request_that_crashed_20_s_ago_can_be_used_again(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    # What a request that died 20 s after claiming the key leaves behind.
    key_id = await key_id_of(app, key)
    async with transaction(alchemy_of(app)) as session:
        session.add(
            IdempotencyRecord(
                api_key_id=key_id,
                idempotency_key="crashed",
                request_fingerprint=idempotency.fingerprint("POST", RESERVATIONS, booking_canonical(body)),
                state="in_flight",
                claim_token="dead",
                expires_at=datetime.now(UTC) - timedelta(seconds=20) + idempotency.LEASE,
            )
        )
    response = await post(client, key, body, idempotency_key="crashed")
    assert response.status_code == 201, response.text


async def test_in_progress_says_how_long_the_lease_may_still_hold(
    client: Client, app: Litestar, studio: Staff
) -> None:
    service = await open_studio(app, studio)
    key = await make_key(app, studio)
    body = booking(service, local(days_ahead(2), "10:00"))
    first = await post(client, key, body, idempotency_key="probe")
    assert first.status_code == 201
    (record,) = await idempotency_records(app)
    async with transaction(alchemy_of(app)) as session:
        session.add(
            IdempotencyRecord(
                api_key_id=record.api_key_id,
                idempotency_key="running",
                request_fingerprint=idempotency.fingerprint("POST", RESERVATIONS, booking_canonical(body)),
                state="in_flight",
                claim_token="alive",
                expires_at=datetime.now(UTC) + idempotency.LEASE,
            )
        )
    response = await post(client, key, body, idempotency_key="running")
    assert_problem(response, 409, "idempotency_request_in_progress")
    assert 1 <= int(response.headers["retry-after"]) <= idempotency.LEASE.total_seconds()
    assert timedelta(seconds=15) >= idempotency.LEASE


def booking_canonical(body: dict[str, Any]) -> bytes:
    return msgspec.convert(body, ReservationIn).canonical()
