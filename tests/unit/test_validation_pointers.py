"""field_errors reads Litestar's and msgspec's wording: one test per message shape, with real errors.

Each request goes to a small Litestar app whose handlers take the API's own schema and parameters; the
ValidationException Litestar raises is caught and fed to field_errors as it is. A Litestar or msgspec
upgrade that rewords a message fails here, not in a client's error handling.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromQuery, JSONBody
from litestar.testing import TestClient

from app.api.pagination import Limit
from app.api.v1.schemas import ReservationIn
from app.api.validation import field_errors
from app.domain.errors import FieldError

VALID_BODY: dict[str, Any] = {
    "service_id": "0192f0e4-5a7e-7000-8000-000000000001",
    "start": "2030-03-04T10:00:00+00:00",
    "customer": {"name": "Ada", "email": "ada@example.com"},
}


@post("/reservations")
async def create(data: JSONBody[ReservationIn]) -> None:
    return None


@get("/services")
async def list_services(service_id: FromQuery[str], limit: FromQuery[Limit] = 50) -> None:
    return None


def _errors_of(method: str, path: str, **request: Any) -> list[FieldError]:
    caught: list[ValidationException] = []

    def keep(_: Request[Any, Any, Any], exc: ValidationException) -> Response[None]:
        caught.append(exc)
        return Response(None, status_code=400)

    app = Litestar([create, list_services], exception_handlers={ValidationException: keep})
    with TestClient(app) as client:
        assert client.request(method, path, **request).status_code == 400
    assert len(caught) == 1
    return field_errors(caught[0])


def test_a_missing_query_parameter_is_named_by_litestar_s_message_only() -> None:
    assert _errors_of("GET", "/services") == [FieldError("/service_id", "This parameter is required.")]


def test_a_query_parameter_out_of_range_points_at_the_parameter() -> None:
    [error] = _errors_of("GET", "/services", params={"service_id": "x", "limit": "0"})
    assert error.pointer == "/limit"
    assert error.detail


def test_a_missing_body_points_at_the_body_itself() -> None:
    assert _errors_of("POST", "/reservations") == [FieldError("", "A JSON body is required.")]


def test_a_missing_top_level_field_points_at_that_field() -> None:
    body = {key: value for key, value in VALID_BODY.items() if key != "customer"}
    [error] = _errors_of("POST", "/reservations", json=body)
    assert error.pointer == "/customer"
    assert "customer" in error.detail


def test_a_missing_nested_field_points_through_its_parent() -> None:
    body = {**VALID_BODY, "customer": {"name": "Ada"}}
    [error] = _errors_of("POST", "/reservations", json=body)
    assert error.pointer == "/customer/email"


@pytest.mark.parametrize(
    ("field", "value", "pointer"),
    [
        ("party_size", 0, "/party_size"),
        ("start", 1796000000, "/start"),  # a string field: Unix time is refused by type
        ("customer", {"name": 5, "email": "ada@example.com"}, "/customer/name"),
    ],
)
def test_a_wrong_value_points_at_its_field_however_deep(field: str, value: Any, pointer: str) -> None:
    [error] = _errors_of("POST", "/reservations", json={**VALID_BODY, field: value})
    assert error.pointer == pointer
    assert error.detail
