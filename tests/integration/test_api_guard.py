"""The guard in front of /api/v1: keys, revocation, expiry, origins, rate limits, scopes, CORS and errors."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import redis as redis_sync
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, update

from app.asgi import create_app
from app.domain.api_keys import rules
from app.domain.api_keys.authentication import KeyStore
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.rate_limit import RateLimiter
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import CLI_ACTOR
from app.lib.clock import SettableClock
from app.lib.db import transaction
from app.settings import Settings
from tests.api_helpers import assert_problem, bearer, key_id_of, make_key, recorded_sql
from tests.fixtures.app import alchemy_of, app_engine, dispose_engines
from tests.fixtures.staff import Staff

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
SERVICES = "/api/v1/services"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def revoke(alchemy: SQLAlchemyAsyncConfig, key: str) -> None:
    async with transaction(alchemy) as session:
        service = ApiKeyService(session=session)
        api_key = await service.get_one(ApiKey.key_hash == rules.hash_key(key))
        await service.revoke(api_key, actor=CLI_ACTOR, now=datetime.now(UTC))


async def test_missing_key_is_401(client: Client) -> None:
    response = await client.get(SERVICES)
    assert_problem(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await client.get(SERVICES, headers={"Authorization": "Basic abc"}), 401, "missing_api_key")
    assert_problem(await client.get(SERVICES, headers={"Authorization": "Bearer "}), 401, "missing_api_key")


async def test_key_in_either_header(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    assert (await client.get(SERVICES, headers={"Authorization": f"Bearer {key}"})).status_code == 200
    assert (await client.get(SERVICES, headers={"Authorization": f"bearer {key}"})).status_code == 200
    assert (await client.get(SERVICES, headers={"X-API-Key": key})).status_code == 200


async def test_malformed_key_is_rejected_without_database_or_redis(
    client: Client, app: Litestar, studio: Staff, redis_url: str
) -> None:
    key = await make_key(app, studio)
    one_char_changed = key[:20] + ("A" if key[20] != "A" else "B") + key[21:]
    candidates = [
        one_char_changed,
        key[:-1],
        key + "x",
        "qv_pk_" + "!" * 38,
        "sk_live_123",
        key.replace("qv_pk_", "qv_sk_"),
    ]

    redis_client = redis_sync.Redis.from_url(redis_url)
    await client.get(SERVICES, headers=bearer(key))  # warm up: connections open, scripts loaded
    redis_client.config_resetstat()
    try:
        with recorded_sql(app) as statements:
            for candidate in candidates:
                assert_problem(await client.get(SERVICES, headers=bearer(candidate)), 401, "invalid_api_key")
            commands = redis_client.info("commandstats")
            assert statements == []
            # Only the INFO and CONFIG RESETSTAT this test sent itself.
            assert all(name.startswith(("cmdstat_info", "cmdstat_config")) for name in commands), commands

            # The same probes do see a valid key's lookup and count, so their silence above means something.
            await client.get(SERVICES, headers=bearer(key))
            assert any("api_keys" in statement for statement in statements)
            assert "cmdstat_evalsha" in redis_client.info("commandstats")
    finally:
        redis_client.close()


async def test_unknown_key_is_401(client: Client) -> None:
    random_but_valid = rules.generate_key()
    assert_problem(await client.get(SERVICES, headers=bearer(random_but_valid)), 401, "invalid_api_key")


async def test_keys_that_are_not_valid_leave_nothing_in_redis(
    client: Client, app: Litestar, studio: Staff, redis_url: str
) -> None:
    """The count comes after the lookup, by key id: unknown, revoked and expired keys, and requests refused
    for their origin, write nothing to Redis; a valid key's requests write its one log."""
    redis = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    before = set(redis.scan_iter("*"))
    valid = await make_key(app, studio)
    assert (await client.get(SERVICES, headers=bearer(valid))).status_code == 200
    expired = await make_key(app, studio, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    revoked = await make_key(app, studio)
    await revoke(alchemy_of(app), revoked)
    fenced = await make_key(app, studio, origins="https://shop.example")
    for _ in range(5):
        assert_problem(
            await client.get(SERVICES, headers=bearer(rules.generate_key())), 401, "invalid_api_key"
        )
    assert_problem(await client.get(SERVICES, headers=bearer(expired)), 401, "key_expired")
    assert_problem(await client.get(SERVICES, headers=bearer(revoked)), 401, "key_revoked")
    refused = await client.get(SERVICES, headers=bearer(fenced, Origin="https://evil.example"))
    assert_problem(refused, 403, "origin_not_allowed")
    rate_limit_keys = {name for name in set(redis.scan_iter("*")) - before if name.startswith("rl:")}
    assert rate_limit_keys == {f"rl:{{{(await key_id_of(app, valid)).hex}}}"}


async def test_a_key_whose_secret_changes_keeps_its_count(
    client: Client, app: Litestar, studio: Staff
) -> None:
    """Counted by the key's id, not its secret: a rolled key's two secrets share one limit."""
    old_secret = await make_key(app, studio, rate_limit=2)
    assert (await client.get(SERVICES, headers=bearer(old_secret))).status_code == 200
    new_secret = rules.generate_key()
    async with transaction(alchemy_of(app)) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == rules.hash_key(old_secret))
            .values(key_hash=rules.hash_key(new_secret))
        )
    last = await client.get(SERVICES, headers=bearer(new_secret))
    assert last.status_code == 200 and last.headers["x-ratelimit-remaining"] == "0"
    assert_problem(await client.get(SERVICES, headers=bearer(new_secret)), 429, "rate_limited")


async def test_revocation_is_honoured_by_the_very_next_request(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio)
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    await revoke(alchemy_of(app), key)
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 401, "key_revoked")


async def test_revocation_from_another_process_is_seen_at_once(
    client: Client, settings: Settings, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio)
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    other_process = create_app(settings)  # its own engine and pool: no shared cache can hide the change
    await revoke(alchemy_of(other_process), key)
    await dispose_engines(other_process)
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 401, "key_revoked")


async def test_expired_key_is_401(client: Client, app: Litestar, studio: Staff) -> None:
    expired = await make_key(app, studio, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert_problem(await client.get(SERVICES, headers=bearer(expired)), 401, "key_expired")
    valid = await make_key(app, studio, expires_at=datetime.now(UTC) + timedelta(minutes=5))
    assert (await client.get(SERVICES, headers=bearer(valid))).status_code == 200


async def test_a_key_expires_once_the_clock_passes_its_expiry(
    client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    key = await make_key(app, studio, expires_at=clock() + timedelta(hours=1))
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    clock.advance(timedelta(minutes=59))
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    clock.advance(timedelta(minutes=2))
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 401, "key_expired")


async def test_deleted_key_is_401(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    async with transaction(alchemy_of(app)) as session:
        service = ApiKeyService(session=session)
        await service.delete((await service.get_one(ApiKey.key_hash == rules.hash_key(key))).id)
    assert_problem(await client.get(SERVICES, headers=bearer(key)), 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("http://localhost:3000", True),
        (None, False),
        ("http://example.com", False),  # scheme differs
        ("https://example.com:8443", False),  # port differs
        ("https://www.example.com", False),  # host differs
        ("https://example.com.evil.test", False),
        ("http://localhost:3001", False),
        ("null", False),
    ],
)
async def test_allowed_origins_match_scheme_host_and_port_exactly(
    client: Client, app: Litestar, studio: Staff, origin: str | None, allowed: bool
) -> None:
    key = await make_key(app, studio, origins="https://example.com, http://localhost:3000")
    headers = bearer(key) | ({"Origin": origin} if origin else {})
    response = await client.get(SERVICES, headers=headers)
    if allowed:
        assert response.status_code == 200
    else:
        body = assert_problem(response, 403, "origin_not_allowed")
        if origin:
            assert origin in body["detail"]


async def test_key_without_origins_accepts_any_origin(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    for origin in ("https://anything.example", "http://127.0.0.1:8001"):
        assert (await client.get(SERVICES, headers=bearer(key, Origin=origin))).status_code == 200
    assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200


async def test_scopes_are_enforced(client: Client, app: Litestar, studio: Staff) -> None:
    write_only = await make_key(app, studio, scopes=("write",))
    body = assert_problem(await client.get(SERVICES, headers=bearer(write_only)), 403, "insufficient_scope")
    assert "read" in body["detail"]
    read_only = await make_key(app, studio, scopes=("read",))
    assert (await client.get(SERVICES, headers=bearer(read_only))).status_code == 200


async def test_burst_of_20_with_a_limit_of_5_lets_exactly_5_through(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio, rate_limit=5)
    responses = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(20)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [429] * 15
    for response in responses:
        assert response.headers["ratelimit-policy"] == '"default";q=5;w=60'
        assert response.headers["x-ratelimit-limit"] == "5"
        remaining, reset = response.headers["x-ratelimit-remaining"], response.headers["x-ratelimit-reset"]
        assert response.headers["ratelimit"] == f'"default";r={remaining};t={reset}'
        if response.status_code == 429:
            body = assert_problem(response, 429, "rate_limited")
            assert body["violated-policies"] == ["default"]
            # The oldest of the 5 leaves the window a minute after it was counted, a moment ago.
            assert response.headers["retry-after"] == reset
            assert 59 <= int(reset) <= 60 and remaining == "0"
            assert f"Retry in {reset} s" in body["detail"]
    served = sorted(
        (int(r.headers["x-ratelimit-remaining"]), int(r.headers["x-ratelimit-reset"]))
        for r in responses
        if r.status_code == 200
    )
    # While some are left, the next request would be admitted at once (t=0); after the 5th, in a minute.
    assert served[1:] == [(1, 0), (2, 0), (3, 0), (4, 0)] and served[0][0] == 0
    assert 59 <= served[0][1] <= 60


async def test_retry_after_is_honoured(settings: Settings, app: Litestar, studio: Staff) -> None:
    """With a 2-second window (the limiter's parameter): a client that waits Retry-After is served."""
    key = await make_key(app, studio, rate_limit=3)
    short = create_app(settings, rate_limiter=partial(RateLimiter, window_s=2))
    async with AsyncTestClient(short) as client:
        statuses = [(await client.get(SERVICES, headers=bearer(key))).status_code for _ in range(3)]
        refused = await client.get(SERVICES, headers=bearer(key))
        assert statuses == [200] * 3
        assert_problem(refused, 429, "rate_limited")
        assert refused.headers["ratelimit-policy"] == '"default";q=3;w=2'
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        await asyncio.sleep(wait)
        assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    await dispose_engines(short)


async def test_bursts_either_side_of_a_window_boundary_get_the_limit_once(
    settings: Settings, app: Litestar, studio: Staff
) -> None:
    """A counter reset at each clock window would serve both bursts; the sliding window serves one."""
    key = await make_key(app, studio, rate_limit=5)
    window_s = 4
    short = create_app(settings, rate_limiter=partial(RateLimiter, window_s=window_s))
    async with AsyncTestClient(short) as client:
        boundary = (time.time() // window_s + 2) * window_s  # a clock window's end, 4 to 8 s from now
        await asyncio.sleep(boundary - 0.5 - time.time())
        before = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(10)))
        await asyncio.sleep(max(0.0, boundary + 0.3 - time.time()))
        after = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(10)))
    await dispose_engines(short)
    assert [r.status_code for r in before].count(200) == 5
    assert [r.status_code for r in after] == [429] * 10, "the next clock window served another burst"


async def test_two_web_processes_share_one_limit(
    http: httpx.AsyncClient, app: Litestar, studio: Staff
) -> None:
    """A black-box burst against `uvicorn --workers 2`: the limit holds across the two processes."""
    key = await make_key(app, studio, rate_limit=10)
    responses = await asyncio.gather(*(http.get(SERVICES, headers=bearer(key)) for _ in range(60)))
    assert sorted(r.status_code for r in responses) == [200] * 10 + [429] * 50
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in responses if r.status_code == 200) == list(
        range(10)
    )


def _other_than_key_lookups(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM api_keys" not in s and s not in ("BEGIN", "COMMIT", "ROLLBACK")]


async def test_once_a_key_is_refused_its_next_reads_are_refused_before_any_query(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio, rate_limit=1)
    with recorded_sql(app) as statements:
        assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
        assert _other_than_key_lookups(statements), "the catalog query is seen"
        assert_problem(await client.get(SERVICES, headers=bearer(key)), 429, "rate_limited")
        statements.clear()
        for _ in range(3):
            assert_problem(await client.get(SERVICES, headers=bearer(key)), 429, "rate_limited")
        # Only the key lookups: a flood past the limit costs the guard's work, not the handler's.
        assert len([s for s in statements if "FROM api_keys" in s]) == 3
        assert _other_than_key_lookups(statements) == []


async def test_the_key_lookup_is_one_indexed_query_on_its_own_read_path(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio)
    await client.get(SERVICES, headers=bearer(key))  # warm up: connections open
    lookups: list[tuple[str, tuple[Any, ...]]] = []
    on_engine: list[str] = []
    store: KeyStore = app.state["key_store"]

    def on_cursor(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        on_engine.append(statement)

    engine = app_engine(app).sync_engine
    event.listen(engine, "before_cursor_execute", on_cursor)
    store.on_statement = lambda sql, parameters: lookups.append((sql, parameters))
    try:
        assert (await client.get(SERVICES, headers=bearer(key))).status_code == 200
    finally:
        store.on_statement = None
        event.remove(engine, "before_cursor_execute", on_cursor)
    # One statement by the unique key_hash index (or the previous secret's), joining only the key's
    # organization (its time zone and catalog version), by its primary key: no ORM load of the key and its
    # creator.
    [(sql, parameters)] = lookups
    assert set(parameters) == {rules.hash_key(key)}
    assert (
        "WHERE api_keys.key_hash =" in sql and "OR api_keys.previous_key_hash =" in sql and "users" not in sql
    )
    assert (
        sql.count("JOIN") == 1 and "JOIN organizations ON organizations.id = api_keys.organization_id" in sql
    )
    # On a database file and on PostgreSQL it runs on a connection of its own, not the app's engine: the
    # hook, not an engine listener, is what sees the path production takes.
    assert not any("FROM api_keys" in statement for statement in on_engine), on_engine


async def test_rate_limit_headers_on_every_guarded_response(
    client: Client, app: Litestar, studio: Staff
) -> None:
    key = await make_key(app, studio, rate_limit=100)
    ok = await client.get(SERVICES, headers=bearer(key))
    not_found = await client.get(f"{SERVICES}/nope", headers=bearer(key))
    invalid = await client.get(f"{SERVICES}?limit=0", headers=bearer(key))
    for response, remaining in ((ok, 99), (not_found, 98), (invalid, 97)):
        assert response.headers["ratelimit-policy"] == '"default";q=100;w=60'
        assert response.headers["x-ratelimit-reset"] == "0"  # requests are left: the next is admitted now
        assert response.headers["ratelimit"] == f'"default";r={remaining};t=0'
        assert response.headers["x-ratelimit-remaining"] == str(remaining)
        assert response.headers["x-ratelimit-limit"] == "100"


async def test_limits_are_per_key(client: Client, app: Litestar, studio: Staff) -> None:
    first = await make_key(app, studio, rate_limit=1)
    second = await make_key(app, studio, rate_limit=1)
    assert (await client.get(SERVICES, headers=bearer(first))).status_code == 200
    assert (await client.get(SERVICES, headers=bearer(first))).status_code == 429
    assert (await client.get(SERVICES, headers=bearer(second))).status_code == 200


async def test_500_concurrent_requests_all_succeed(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio, rate_limit=1000)
    responses = await asyncio.gather(*(client.get(SERVICES, headers=bearer(key)) for _ in range(500)))
    assert [r.status_code for r in responses].count(200) == 500


async def test_preflight_is_answered_without_a_key(client: Client) -> None:
    response = await client.options(
        SERVICES,
        headers={
            "Origin": "https://widget.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://widget.example"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, POST, OPTIONS"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key", "x-api-key"}
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in response.headers["vary"]


async def test_cors_headers_on_success_and_errors(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio, origins="https://widget.example", rate_limit=1)
    origin = {"Origin": "https://widget.example"}
    responses = {
        "ok": await client.get(SERVICES, headers=bearer(key, **origin)),
        "limited": await client.get(SERVICES, headers=bearer(key, **origin)),
        "missing": await client.get(SERVICES, headers=origin),
        "origin": await client.get(SERVICES, headers=bearer(key, Origin="https://other.example")),
    }
    assert responses["ok"].status_code == 200 and responses["limited"].status_code == 429
    for name, response in responses.items():
        expected_origin = "https://other.example" if name == "origin" else "https://widget.example"
        assert response.headers["access-control-allow-origin"] == expected_origin, name
        assert "Origin" in response.headers["vary"]
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert {
            "RateLimit",
            "RateLimit-Policy",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
            "Location",
            "X-Request-Id",
        } <= exposed


async def test_every_response_has_a_request_id(client: Client, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    generated = await client.get(SERVICES, headers=bearer(key))
    assert len(generated.headers["x-request-id"]) >= 16
    echoed = await client.get(SERVICES, headers=bearer(key, **{"X-Request-Id": "trace-123_abc.def"}))
    assert echoed.headers["x-request-id"] == "trace-123_abc.def"
    hostile = await client.get(SERVICES, headers=bearer(key, **{"X-Request-Id": "a b\tc" * 30}))
    assert hostile.headers["x-request-id"] != "a b\tc" * 30
    unknown_route = await client.get("/api/v1/nothing-here", headers=bearer(key))
    assert_problem(unknown_route, 404, "not_found")


async def test_redis_down_fails_open_with_a_warning(
    settings: Settings, app: Litestar, studio: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    key = await make_key(app, studio, rate_limit=1)
    broken = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0"))
    caplog.set_level(logging.WARNING)
    async with AsyncTestClient(broken) as client:
        for _ in range(3):  # over the limit of 1, yet served: the count is unknown
            response = await client.get(SERVICES, headers=bearer(key))
            assert response.status_code == 200
            assert response.headers["ratelimit-policy"] == '"default";q=1;w=60'
    await dispose_engines(broken)
    assert "rate limiting is failing open" in caplog.text


async def test_database_down_is_503(settings: Settings, app: Litestar, studio: Staff) -> None:
    key = await make_key(app, studio)
    broken = create_app(
        replace(settings, database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/none")
    )
    async with AsyncTestClient(broken) as client:
        assert_problem(await client.get(SERVICES, headers=bearer(key)), 503, "service_unavailable")
