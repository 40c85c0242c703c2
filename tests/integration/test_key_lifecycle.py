"""Rolling and editing keys as the Public Booking API sees them: grace, Sunset, one shared limit, the next
request in every process, refusals of dead keys in their usage, and GET /api/v1/key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text

from app.asgi import create_app
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService, IssuedKey, KeyNotRollable
from app.domain.audit.models import AuditEvent
from app.domain.audit.services import CLI_ACTOR
from app.domain.usage.models import minute_of
from app.domain.usage.recorder import REFUSED_EXPIRED, REFUSED_REVOKED
from app.domain.usage.services import refused_requests
from app.domain.webhooks.models import WebhookEvent
from app.lib.clock import SettableClock
from app.lib.db import transaction
from app.settings import Settings
from tests.api_helpers import assert_problem, bearer, key_id_of, make_key
from tests.fixtures.app import alchemy_of, app_engine, dispose_engines
from tests.fixtures.staff import Staff
from tests.usage_helpers import counted_requests, eventually, running_worker
from tests.webhook_helpers import add_endpoint

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
SERVICES = "/api/v1/services"
WHOAMI = "/api/v1/key"


async def roll(app: Litestar, key_id: uuid.UUID, grace: timedelta, now: datetime) -> IssuedKey:
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        return await service.roll(await service.get(key_id), grace, actor=CLI_ACTOR, now=now)


async def edit(app: Litestar, key_id: uuid.UUID, now: datetime, **changes: Any) -> ApiKey:
    """Edit through the service with the form's validation; fields not given keep their values."""
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        api_key = await service.get(key_id)
        fields: dict[str, Any] = {
            "name": api_key.name,
            "scopes": api_key.scopes,
            "origins": ",".join(api_key.allowed_origins),
            "rate_limit": api_key.rate_limit_per_minute,
            "expires_in_days": "keep",
        }
        fields.update(changes)
        request = rules.validate_key_request(**fields, allow_keep=True)
        return await service.edit(api_key, request, actor=CLI_ACTOR, now=now)


async def audit_entries(app: Litestar, key_id: uuid.UUID, action: str) -> list[AuditEvent]:
    async with transaction(alchemy_of(app)) as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.subject_id == key_id, AuditEvent.action == action)
        )
        return list(rows)


async def test_a_rolled_key_keeps_its_previous_secret_for_the_grace_with_a_sunset_header(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio)
    key_id = await key_id_of(app, old)
    issued = await roll(app, key_id, timedelta(hours=1), clock())
    new = issued.secret
    assert issued.api_key.id == key_id and new != old
    assert issued.api_key.prefix == rules.display_prefix(new)
    assert issued.api_key.previous_prefix == rules.display_prefix(old)

    current = await client.get(SERVICES, headers=bearer(new))
    assert current.status_code == 200 and "sunset" not in current.headers
    previous = await client.get(SERVICES, headers=bearer(old))
    assert previous.status_code == 200
    ends = issued.api_key.previous_expires_at
    assert ends is not None and timedelta(minutes=59) < ends - clock() <= timedelta(hours=1)
    assert previous.headers["sunset"].endswith(" GMT")
    assert parsedate_to_datetime(previous.headers["sunset"]) == ends.replace(microsecond=0)
    # Browsers let a widget's script read it.
    cross_origin = await client.get(SERVICES, headers=bearer(old, Origin="https://shop.example"))
    assert "Sunset" in cross_origin.headers["access-control-expose-headers"]

    clock.advance(timedelta(minutes=61))
    body = assert_problem(await client.get(SERVICES, headers=bearer(old)), 401, "key_expired")
    assert "rolled" in body["detail"]
    assert (await client.get(SERVICES, headers=bearer(new))).status_code == 200


async def test_only_hashes_are_stored_for_both_secrets(
    app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio)
    key_id = await key_id_of(app, old)
    new = (await roll(app, key_id, timedelta(days=7), clock())).secret
    async with transaction(alchemy_of(app)) as session:
        row = (await session.execute(text("SELECT * FROM api_keys"))).one()
    stored = " ".join(str(value) for value in row)
    assert old not in stored and new not in stored
    assert rules.hash_key(old) in stored and rules.hash_key(new) in stored


async def test_grace_now_ends_the_previous_secret_at_once(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio)
    new = (await roll(app, await key_id_of(app, old), timedelta(), clock())).secret
    assert_problem(await client.get(SERVICES, headers=bearer(old)), 401, "key_expired")
    assert (await client.get(SERVICES, headers=bearer(new))).status_code == 200


async def test_rolling_again_ends_the_older_secret_at_once(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    first = await make_key(app, studio)
    key_id = await key_id_of(app, first)
    second = (await roll(app, key_id, timedelta(days=7), clock())).secret
    rolled_again = await roll(app, key_id, timedelta(days=7), clock())
    assert_problem(await client.get(SERVICES, headers=bearer(first)), 401, "invalid_api_key")
    assert (await client.get(SERVICES, headers=bearer(second))).status_code == 200
    assert (await client.get(SERVICES, headers=bearer(rolled_again.secret))).status_code == 200
    [_, last] = sorted(await audit_entries(app, key_id, "api_key.rolled"), key=lambda event: event.created_at)
    assert last.details["ended_previous_prefix"] == rules.display_prefix(first)
    assert last.details["previous_prefix"] == rules.display_prefix(second)


async def test_the_grace_never_outlives_the_key(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio, expires_at=clock() + timedelta(hours=2))
    issued = await roll(app, await key_id_of(app, old), timedelta(days=7), clock())
    assert issued.api_key.previous_expires_at == issued.api_key.expires_at
    previous = await client.get(SERVICES, headers=bearer(old))
    assert issued.api_key.expires_at is not None
    assert parsedate_to_datetime(previous.headers["sunset"]) == issued.api_key.expires_at.replace(
        microsecond=0
    )
    clock.advance(timedelta(hours=2, seconds=1))
    assert_problem(await client.get(SERVICES, headers=bearer(old)), 401, "key_expired")
    assert_problem(await client.get(SERVICES, headers=bearer(issued.secret)), 401, "key_expired")


async def test_both_secrets_share_one_rate_limit(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio, rate_limit=4)
    new = (await roll(app, await key_id_of(app, old), timedelta(hours=1), clock())).secret
    statuses = [(await client.get(SERVICES, headers=bearer(secret))).status_code for secret in (old, new) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_revoking_or_deleting_a_rolled_key_ends_both_secrets(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio)
    key_id = await key_id_of(app, old)
    new = (await roll(app, key_id, timedelta(days=7), clock())).secret
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        await service.revoke(await service.get(key_id), actor=CLI_ACTOR, now=clock())
    for secret in (old, new):
        assert_problem(await client.get(SERVICES, headers=bearer(secret)), 401, "key_revoked")
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        await service.remove(await service.get(key_id), actor=CLI_ACTOR)
    for secret in (old, new):
        assert_problem(await client.get(SERVICES, headers=bearer(secret)), 401, "invalid_api_key")


async def test_of_two_revocations_of_one_key_only_the_first_writes(
    app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    """Two admins revoke one key at once: each read it active, but only the first revocation is recorded (one
    audit entry, one api_key.revoked event), and the second answers with the first one's time."""
    key_id = await key_id_of(app, await make_key(app, studio))
    await add_endpoint(app, studio, "https://hooks.example.com/keys", ["api_key.revoked"])
    async with transaction(alchemy_of(app)) as session:
        stale = await ApiKeyService(session=session).get(key_id)  # the second admin's view: still active
    assert stale.revoked_at is None
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        first = await service.revoke(await service.get(key_id), actor=CLI_ACTOR, now=clock())
    async with transaction(alchemy_of(app)) as session:
        second = await ApiKeyService(session=session).revoke(
            stale, actor=CLI_ACTOR, now=clock() + timedelta(minutes=1)
        )
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "api_key.revoked", AuditEvent.subject_id == key_id)
        )
        events = await session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.type == "api_key.revoked")
        )
    assert first.revoked_at is not None and second.revoked_at == first.revoked_at
    assert (audited, events) == (1, 1)


async def test_a_revoked_or_expired_key_cannot_be_rolled(
    app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    expired = await make_key(app, studio, expires_at=clock() - timedelta(seconds=1))
    expired_id = await key_id_of(app, expired)
    with pytest.raises(KeyNotRollable, match="expired"):
        await roll(app, expired_id, timedelta(), clock())
    async with transaction(alchemy_of(app)) as session:
        row = await session.get_one(ApiKey, expired_id)
        assert row.previous_key_hash is None


async def test_the_lookup_finds_either_secret_through_an_index(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    """The OR of the two hash columns is still one indexed lookup: no scan of api_keys."""
    old = await make_key(app, studio)
    await roll(app, await key_id_of(app, old), timedelta(hours=1), clock())
    async with app_engine(app).connect() as connection:
        if connection.dialect.name == "sqlite":
            plan = (
                await connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM api_keys WHERE key_hash = ? OR previous_key_hash = ?",
                    ("x", "x"),
                )
            ).all()
            details = " ".join(str(row[-1]) for row in plan)
            assert "SCAN api_keys" not in details.replace("SCAN api_keys USING", "")
            assert "uq_api_keys_key_hash" in details or "sqlite_autoindex" in details, details
            assert "ix_api_keys_previous_key_hash" in details, details
        else:
            await connection.exec_driver_sql("SET enable_seqscan = off")
            plan = (
                await connection.exec_driver_sql(
                    "EXPLAIN SELECT id FROM api_keys WHERE key_hash = $1 OR previous_key_hash = $1", ("x",)
                )
            ).all()
            details = " ".join(str(row[0]) for row in plan)
            assert "uq_api_keys_key_hash" in details and "ix_api_keys_previous_key_hash" in details, details


async def test_an_edit_is_seen_by_the_very_next_request(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    key = await make_key(app, studio, scopes=("read",), rate_limit=1000)
    key_id = await key_id_of(app, key)
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    await edit(app, key_id, clock(), origins="https://shop.example")
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 403, "origin_not_allowed")
    assert (await client.get(SERVICES, headers=bearer(key, Origin="https://shop.example"))).status_code == 200
    await edit(app, key_id, clock(), origins="", scopes=["write"])
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 403, "insufficient_scope")
    await edit(app, key_id, clock(), scopes=["read"], rate_limit=2)
    response = await client.get(SERVICES, headers=bearer(key))
    assert response.headers["x-ratelimit-limit"] == "2"
    await edit(app, key_id, clock(), expires_in_days="30")
    assert (await client.get(SERVICES, headers=bearer(key))).status_code in (200, 429)
    clock.advance(timedelta(days=30, seconds=1))
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 401, "key_expired")
    await edit(app, key_id, clock(), expires_in_days="never")
    assert (await client.get(SERVICES, headers=bearer(key))).status_code in (200, 429)


async def test_each_edit_is_an_audit_entry_with_before_and_after(
    app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    key = await make_key(app, studio, scopes=("read",), rate_limit=60)
    key_id = await key_id_of(app, key)
    await edit(app, key_id, clock(), name="Renamed", rate_limit=120)
    await edit(app, key_id, clock())  # nothing changed: nothing recorded
    [entry] = await audit_entries(app, key_id, "api_key.updated")
    assert entry.details == {
        "changes": {
            "name": {"before": "Test key", "after": "Renamed"},
            "rate_limit_per_minute": {"before": 60, "after": 120},
        }
    }
    assert entry.subject_label.startswith("Renamed (")


async def test_an_edit_in_one_process_is_seen_at_once_by_both_server_processes(
    http: httpx.AsyncClient, settings: Settings, app: Litestar, studio: Staff
) -> None:
    """`uvicorn --workers 2`: after an edit made by another process, every request in both sees it."""
    key = await make_key(app, studio, scopes=("read",))
    key_id = await key_id_of(app, key)
    before = await asyncio.gather(*(http.get(SERVICES, headers=bearer(key)) for _ in range(20)))
    assert [r.status_code for r in before] == [200] * 20
    other_process = create_app(settings)
    await edit(other_process, key_id, datetime.now(UTC), scopes=["write"])
    after = await asyncio.gather(*(http.get(SERVICES, headers=bearer(key)) for _ in range(20)))
    assert [r.status_code for r in after] == [403] * 20
    # A roll too: the new secret works and the previous one carries its Sunset, in both processes.
    new = (await roll(other_process, key_id, timedelta(hours=1), datetime.now(UTC))).secret
    await dispose_engines(other_process)
    await edit(app, key_id, datetime.now(UTC), scopes=["read"])
    with_new = await asyncio.gather(*(http.get(SERVICES, headers=bearer(new)) for _ in range(10)))
    with_old = await asyncio.gather(*(http.get(SERVICES, headers=bearer(key)) for _ in range(10)))
    assert [r.status_code for r in with_new + with_old] == [200] * 20
    assert all("sunset" in r.headers for r in with_old) and not any("sunset" in r.headers for r in with_new)


async def test_refusals_of_revoked_and_expired_keys_count_in_their_usage(
    client: Client, app: Litestar, settings: Settings, studio: Staff, clock: SettableClock
) -> None:
    revoked = await make_key(app, studio)
    expired = await make_key(app, studio, expires_at=clock() - timedelta(seconds=1))
    revoked_id, expired_id = await key_id_of(app, revoked), await key_id_of(app, expired)
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        await service.revoke(await service.get(revoked_id), actor=CLI_ACTOR, now=clock())
    first_minute = minute_of(datetime.now(UTC))
    async with running_worker(settings):
        for _ in range(3):
            assert_problem(await client.get(SERVICES, headers=bearer(revoked)), 401, "key_revoked")
        for _ in range(2):
            assert_problem(await client.get(SERVICES, headers=bearer(expired)), 401, "key_expired")
        await eventually(lambda: _counted_at_least(app, 5))
    assert await counted_requests(app, key_id=revoked_id, status_class=REFUSED_REVOKED) == 3
    assert await counted_requests(app, key_id=expired_id, status_class=REFUSED_EXPIRED) == 2
    async with transaction(alchemy_of(app)) as session:
        summary = await refused_requests(session, revoked_id, clock() - timedelta(days=7))
        later = await refused_requests(session, revoked_id, clock() + timedelta(minutes=2))
        row = await session.get_one(ApiKey, revoked_id)
    assert summary.count == 3 and summary.last_at is not None
    assert first_minute <= summary.last_at <= datetime.now(UTC)  # to the minute of the last refusal
    assert later.count == 0 and later.last_at is None
    assert row.last_used_at is None, "a refused request is not a use of the key"


async def _counted_at_least(app: Litestar, expected: int) -> bool:
    return await counted_requests(app) >= expected


async def test_whoami_returns_the_calling_key_with_any_scope(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    key = await make_key(app, studio, scopes=("write",), origins="https://shop.example", rate_limit=3)
    key_id = await key_id_of(app, key)
    response = await client.get(WHOAMI, headers=bearer(key, Origin="https://shop.example"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": str(key_id),
        "name": "Test key",
        "prefix": rules.display_prefix(key),
        "scopes": ["write"],
        "allowed_origins": ["https://shop.example"],
        "rate_limit_per_minute": 3,
        "expires_at": None,
        "secret_expires_at": None,
    }
    # Counted like any request: it spends the limit, and its guard refusals are the usual ones.
    assert response.headers["x-ratelimit-remaining"] == "2"
    assert_problem(await client.get(WHOAMI, headers=bearer(key)), 403, "origin_not_allowed")
    assert_problem(await client.get(WHOAMI), 401, "missing_api_key")


async def test_whoami_with_the_previous_secret_says_when_it_stops_working(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    old = await make_key(app, studio, scopes=("read",), expires_at=clock() + timedelta(days=30))
    issued = await roll(app, await key_id_of(app, old), timedelta(hours=24), clock())
    with_old = (await client.get(WHOAMI, headers=bearer(old))).json()
    with_new = (await client.get(WHOAMI, headers=bearer(issued.secret))).json()
    assert with_new["secret_expires_at"] is None and with_new["prefix"] == issued.api_key.prefix
    assert with_new["expires_at"] is not None
    ends = issued.api_key.previous_expires_at
    assert ends is not None and timedelta(hours=23) < ends - clock() <= timedelta(hours=24)
    assert datetime.fromisoformat(with_old["secret_expires_at"]) == ends.replace(microsecond=0)


async def test_whoami_is_in_the_openapi_schema(client: Client) -> None:
    schema = (await client.get("/api/docs/openapi.json")).json()
    operation = schema["paths"]["/api/v1/key"]["get"]
    assert operation["tags"] == ["Key"]
    assert "401" in operation["responses"] and "200" in operation["responses"]
    properties = schema["components"]["schemas"]["KeyOut"]["properties"]
    assert {
        "id",
        "name",
        "prefix",
        "scopes",
        "allowed_origins",
        "rate_limit_per_minute",
        "expires_at",
    } <= set(properties)
    assert "secret_expires_at" in properties
