"""Per-key rate limits: a fixed one-minute window counted in Redis with one round trip per request."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError, ResponseError

from app.redis_pipe import RedisPipe

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


_EXPIRY = str(WINDOW_SECONDS * 2)


def _transaction(key: str) -> bytes:
    """MULTI, INCR key, EXPIRE key 120 NX, EXEC, in the Redis protocol (keys are ASCII: rl:<hex>:<int>)."""
    head = f"${len(key)}\r\n{key}\r\n"
    return (
        f"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n{head}*4\r\n$6\r\nEXPIRE\r\n{head}"
        f"${len(_EXPIRY)}\r\n{_EXPIRY}\r\n$2\r\nNX\r\n*1\r\n$4\r\nEXEC\r\n"
    ).encode()


class RateLimiter:
    """Counts requests per key and window. Fails open: when Redis is unreachable the API keeps serving."""

    def __init__(self, redis: RedisPipe) -> None:
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
            count = await self._incr_with_expiry(key)
        except (RedisError, OSError) as exc:  # RedisUnavailable is a ConnectionError, an OSError
            self._skip_until = now + RETRY_AFTER_FAILURE_S
            if now - self._last_warning >= WARNING_INTERVAL_S:
                self._last_warning = now
                logger.warning("rate limiting is failing open: Redis is unreachable (%s)", exc)
            return None
        return decide(int(count), limit, now)

    async def _incr_with_expiry(self, key: str) -> int:
        """INCR and its expiry in one MULTI/EXEC: one round trip, and no counter lives forever."""
        replies = await self._redis.request(_transaction(key), replies=4)  # +OK, +QUEUED, +QUEUED, EXEC
        if not isinstance(replies, list) or isinstance(replies[0], Exception):
            raise ResponseError(f"unexpected reply to the rate-limit transaction: {replies!r}")
        return int(replies[0])
