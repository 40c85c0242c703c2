"""Per-key rate limits: a fixed one-minute window counted in Redis with one round trip per request."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from app.redis_pipe import RedisPipe, encode_command

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


def counter_key(key_hash: str, now: float) -> str:
    """The key's counter for the window `now` is in, named by the key's hash (known before the key's row)."""
    return f"rl:{key_hash}:{window_start(now)}"


_EXPIRY = str(WINDOW_SECONDS * 2)


def _transaction(key: str) -> bytes:
    """MULTI, INCR key, EXPIRE key 120 NX, EXEC, in the Redis protocol (keys are ASCII: rl:<hex>:<int>)."""
    head = f"${len(key)}\r\n{key}\r\n"
    return (
        f"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n{head}*4\r\n$6\r\nEXPIRE\r\n{head}"
        f"${len(_EXPIRY)}\r\n{_EXPIRY}\r\n$2\r\nNX\r\n*1\r\n$4\r\nEXEC\r\n"
    ).encode()


# Keys remembered as over their limit in the current window, per process (see RateLimiter.known_refused).
_REFUSED_MEMO_LIMIT = 100_000


@dataclass(slots=True)
class PendingHit:
    """One request's rate-limit transaction, sent as soon as the key is known to be well formed (before its
    row is read); decided when awaited."""

    key_hash: str
    now: float
    payload: bytes
    reply: asyncio.Future[Any] | None  # None: not sent (Redis skipped after a failure, or not connected)
    skipped: bool = False

    @property
    def ready(self) -> bool:
        """Whether its decision can be had without waiting."""
        return self.skipped or (self.reply is not None and self.reply.done())


class RateLimiter:
    """Counts requests per key and window. Fails open: when Redis is unreachable the API keeps serving."""

    def __init__(self, redis: RedisPipe) -> None:
        self._redis = redis
        self._skip_until = 0.0
        self._last_warning = 0.0
        self._refused: set[str] = set()
        self._refused_window = 0

    def start(self, key_hash: str, alone: bool = False) -> PendingHit:
        """Count one request of the key with this hash: the transaction is sent, its outcome is
        `await decision(pending, limit)`. `alone`: no other request is in progress in this process, so it
        is written at once (see RedisPipe)."""
        now = time.time()
        if now < self._skip_until:
            return PendingHit(key_hash, now, b"", None, skipped=True)
        payload = _transaction(counter_key(key_hash, now))
        return PendingHit(key_hash, now, payload, self._redis.send_now(payload, 4, at_once=alone))

    async def decision(self, pending: PendingHit, limit: int) -> RateLimitDecision | None:
        """The decision for a started hit; None when the count is unknown because Redis is unreachable."""
        if pending.skipped:
            return None
        try:
            if pending.reply is None:  # not connected when it started: connect, and send it now
                replies = await self._redis.request(pending.payload, replies=4)
            else:
                replies = await pending.reply
            # +OK, +QUEUED, +QUEUED, then EXEC's reply: [count, expire-result]
            if not isinstance(replies, list) or isinstance(replies[0], Exception):
                raise ResponseError(f"unexpected reply to the rate-limit transaction: {replies!r}")
        except (RedisError, OSError) as exc:  # RedisUnavailable is a ConnectionError, an OSError
            self._skip_until = pending.now + RETRY_AFTER_FAILURE_S
            if pending.now - self._last_warning >= WARNING_INTERVAL_S:
                self._last_warning = pending.now
                logger.warning("rate limiting is failing open: Redis is unreachable (%s)", exc)
            return None
        decision = decide(int(replies[0]), limit, pending.now)
        if not decision.allowed:
            self._remember_refused(pending.key_hash, pending.now)
        return decision

    @staticmethod
    def abandon(pending: PendingHit) -> None:
        """A request that ended without awaiting its decision (cancelled) drops the reply, or marks its
        failure as seen; harmless after `decision`."""
        reply = pending.reply
        if reply is None:
            return
        if not reply.done():
            reply.cancel()
        else:
            _consume(reply)

    def forget(self, pending: PendingHit) -> None:
        """The key turned out unknown, revoked or expired: its counter is deleted without waiting, so that
        made-up keys with a valid checksum leave nothing behind in Redis."""
        self.abandon(pending)
        if pending.skipped:
            return
        command = encode_command("DEL", counter_key(pending.key_hash, pending.now))
        reply = self._redis.send_now(command, 1)
        if reply is not None:
            reply.add_done_callback(_consume)

    def known_refused(self, key_hash: str) -> bool:
        """Whether this process has refused the key in the current window already: its next requests are
        then decided before any work is done for them."""
        return key_hash in self._refused and self._refused_window == window_start(time.time())

    def _remember_refused(self, key_hash: str, now: float) -> None:
        window = window_start(now)
        if window != self._refused_window:
            self._refused, self._refused_window = set(), window
        if len(self._refused) < _REFUSED_MEMO_LIMIT:
            self._refused.add(key_hash)


def _consume(reply: asyncio.Future[Any]) -> None:
    """Marks the outcome of a reply nobody awaits as seen (asyncio would log a lost failure)."""
    if not reply.cancelled():
        reply.exception()
