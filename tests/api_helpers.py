"""Helpers for Public Booking API tests: keys and catalog rows made through the real services."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from sqlalchemy import event, select, update

from app.domain.api_keys import rules
from app.domain.api_keys.authentication import KeyStore
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import CLI_ACTOR
from app.domain.booking.models import Package, Service
from app.domain.booking.reads import BookingReads
from app.lib.db import transaction
from app.lib.writes import writes_for
from app.web.health import HealthCheck
from tests.fixtures.app import alchemy_of, app_engine
from tests.fixtures.staff import Staff


async def make_key(
    app: Litestar,
    staff: Staff,
    *,
    scopes: tuple[str, ...] = ("read", "write"),
    origins: str = "",
    rate_limit: int = 1000,
    expires_at: datetime | None = None,
) -> str:
    async with transaction(alchemy_of(app)) as session:
        request = rules.validate_key_request(
            name="Test key", scopes=scopes, origins=origins, rate_limit=rate_limit, expires_in_days=None
        )
        issued = await ApiKeyService(session=session).issue(
            staff.organization.id, request, actor=CLI_ACTOR, now=datetime.now(UTC)
        )
        if expires_at is not None:
            await session.execute(
                update(ApiKey).where(ApiKey.id == issued.api_key.id).values(expires_at=expires_at)
            )
    return issued.secret


def service_row(staff: Staff, **overrides: Any) -> Service:
    values: dict[str, Any] = {
        "organization_id": staff.organization.id,
        "name": "Massage",
        "description": "",
        "duration_minutes": 60,
        "price_amount": 6500,
        "currency": "GBP",
        "capacity": 1,
        "is_active": True,
        "slot_interval_minutes": 30,
        "min_notice_minutes": 0,
        "booking_horizon_days": 60,
        "buffer_before_minutes": 0,
        "buffer_after_minutes": 0,
    }
    values.update(overrides)
    return Service(**values)


async def add_services(app: Litestar, staff: Staff, *services: Service) -> list[Service]:
    async with transaction(alchemy_of(app)) as session:
        session.add_all(services)
    return list(services)


async def add_package(app: Litestar, staff: Staff, services: list[Service], **overrides: Any) -> Package:
    values: dict[str, Any] = {
        "organization_id": staff.organization.id,
        "name": "5 pack",
        "description": "",
        "session_count": 5,
        "validity_days": 180,
        "price_amount": 30000,
        "currency": "GBP",
        "is_active": True,
    }
    values.update(overrides)
    async with transaction(alchemy_of(app)) as session:
        package = Package(**values)
        package.services = [await session.merge(service) for service in services]
        session.add(package)
    return package


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"] and body["type"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def key_id_of(app: Litestar, key: str) -> uuid.UUID:
    async with transaction(alchemy_of(app)) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == rules.hash_key(key)))
    assert key_id is not None
    return key_id


@contextlib.contextmanager
def recorded_sql(app: Litestar) -> Iterator[list[str]]:
    """Every statement the app sends while the block runs: its engine's, and those of the API key lookups,
    the API's reads, the health check and the bookings, which run on read and write paths of their own and
    are seen through the `on_statement` hooks of the key store, the booking reads, the health check and the
    write path."""
    statements: list[str] = []
    engine = app_engine(app).sync_engine
    store: KeyStore = app.state["key_store"]
    reads: BookingReads = app.state["booking_reads"]
    writes = writes_for(app_engine(app))
    health: HealthCheck = app.state["health_check"]

    def on_cursor(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", on_cursor)

    def on_statement(sql: str, _parameters: Any) -> None:
        statements.append(sql)

    store.on_statement = reads.on_statement = writes.on_statement = health.on_statement = on_statement
    try:
        yield statements
    finally:
        store.on_statement = reads.on_statement = writes.on_statement = health.on_statement = None
        event.remove(engine, "before_cursor_execute", on_cursor)
