"""Per-key rate limits: a fixed one-minute window counted in Redis with one round trip per request."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# After Redis fails, skip it for a moment: requests then cost no timeout while it is down.
RETRY_AFTER_FAILURE_S = 5.0
WARNING_INTERVAL_S = 30.0


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool


def window_start(now: float) -> int:
    return int(now) // WINDOW_SECONDS * WINDOW_SECONDS


def decide(count: int, limit: int, now: float) -> RateLimitDecision:
    """The decision for the `count`-th request of the current window."""
    reset = window_start(now) + WINDOW_SECONDS - int(now)
    return RateLimitDecision(
        limit=limit, remaining=max(0, limit - count), reset_seconds=reset, allowed=count <= limit
    )


def counter_key(key_id: uuid.UUID, now: float) -> str:
    return f"rl:{key_id.hex}:{window_start(now)}"


class RateLimiter:
    """Counts requests per key and window. Fails open: when Redis is unreachable the API keeps serving."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._skip_until = 0.0
        self._last_warning = 0.0

    async def hit(self, key_id: uuid.UUID, limit: int) -> RateLimitDecision | None:
        """Count one request; None when the count is unknown because Redis is unreachable."""
        now = time.time()
        if now < self._skip_until:
            return None
        key = counter_key(key_id, now)
        try:
            # INCR and its expiry travel together in one MULTI/EXEC: one round trip, and no counter lives forever.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS * 2, nx=True)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._skip_until = now + RETRY_AFTER_FAILURE_S
            if now - self._last_warning >= WARNING_INTERVAL_S:
                self._last_warning = now
                logger.warning("rate limiting is failing open: Redis is unreachable (%s)", exc)
            return None
        return decide(int(count), limit, now)
