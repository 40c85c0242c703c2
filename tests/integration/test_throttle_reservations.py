"""SignInThrottle against a real Valkey: what counts, what is given back, and the ceiling that only slows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.domain.accounts import throttle
from app.domain.accounts.throttle import SignInThrottle
from app.settings import Settings

pytestmark = pytest.mark.anyio
EMAIL = "owner@studio.test"


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def test_refused_attempts_count_for_nothing_and_success_gives_its_attempt_back(redis: Redis) -> None:
    sign_ins = SignInThrottle(redis)
    for _ in range(throttle.MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS):
        assert (await sign_ins.reserve(EMAIL, "192.0.2.1")).admitted
    for _ in range(10):
        refused = await sign_ins.reserve(EMAIL, "192.0.2.1")
        assert not refused.admitted and 1 <= refused.wait_seconds <= throttle.WINDOW_S
    # Ten refusals did not count: the address total is the five admitted attempts.
    assert (
        int(await redis.get("signin:try:addr:192.0.2.1") or 0)
        == throttle.MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS
    )
    # Another address is not affected; its success leaves its own counters as they were.
    reservation = await sign_ins.reserve(EMAIL, "192.0.2.2")
    assert reservation.admitted
    await sign_ins.record_success(EMAIL, "192.0.2.2", reservation)
    assert int(await redis.get("signin:try:addr:192.0.2.2") or 0) == 0
    # Every key the throttle writes expires.
    for key in await redis.keys("signin:*"):
        assert 0 < await redis.ttl(key) <= throttle.WINDOW_S


async def test_past_the_account_ceiling_each_address_gets_one_attempt_per_interval(redis: Redis) -> None:
    sign_ins = SignInThrottle(redis)
    reached = []
    for n in range(throttle.ACCOUNT_CEILING):
        reservation = await sign_ins.reserve(EMAIL, f"198.51.100.{n}")
        assert reservation.admitted
        reached.append(reservation.ceiling_reached)
    assert reached == [False] * (throttle.ACCOUNT_CEILING - 1) + [True]  # reported once
    for address in ("203.0.113.1", "203.0.113.2"):
        first = await sign_ins.reserve(EMAIL, address)
        assert first.admitted and not first.ceiling_reached
        second = await sign_ins.reserve(EMAIL, address)
        assert not second.admitted and 1 <= second.wait_seconds <= throttle.SLOWED_INTERVAL_S
    assert (await sign_ins.reserve("someone-else@studio.test", "203.0.113.1")).admitted
