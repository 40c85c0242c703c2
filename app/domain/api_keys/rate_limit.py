"""Per-key rate limits: an exact sliding window, decided in Redis with one round trip per request.

For every key and every span of `window_s` seconds (60 in the app), at most the key's limit is admitted,
across every web process: each key has a log in Redis, a list of the times of its admitted requests, newest
first, never longer than the limit. A Lua script drops the times that left the window, and admits the
request (pushing its time) only if fewer than `limit` remain; a refused request writes nothing, so it costs
no quota. The clock is Redis's own (TIME inside the script), so skew between web servers cannot move the
window, and the script is one atomic step. The log expires one window after its newest entry.

The log is named by the key's id (`rl:{<key id>}`: a Redis Cluster hash tag, though a call touches one key
only), so a rolled key's two secrets share one limit, and only keys that passed the lookup are counted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass

from hiredis import ReplyError
from redis.exceptions import RedisError, ResponseError

from app.lib.redis_pipe import RedisPipe, encode_command

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# After Redis fails, skip it for a moment: requests then cost no timeout while it is down.
RETRY_AFTER_FAILURE_S = 5.0
WARNING_INTERVAL_S = 30.0

# KEYS[1]: the key's log. ARGV: the limit, the window in µs, and (tests only) the time in µs to use instead
# of Redis's clock. Returns {admitted (1 or 0), remaining, µs until a next request would be admitted: when
# the limit-th newest admission leaves the window, the oldest one unless the limit was lowered}.
# Times that left the window are popped first, so what remains is the window's count, and a request is
# admitted only below the limit: the log never holds more than the limit (or, for a window after the limit
# was lowered, the older limit), and nothing is trimmed that a raised limit would still have to count.
# An admission counts while `now - time <= window`: times are whole µs, so the true span between a request
# and the limit-th one before it is then always more than the window, never equal to it.
SLIDING_WINDOW_SCRIPT = """
local log = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now
if ARGV[3] then
  now = tonumber(ARGV[3])
else
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local newest = redis.call('LINDEX', log, 0)
if newest and tonumber(newest) > now then
  now = tonumber(newest)  -- Redis's clock stepped back: keep the log in order
end
local count = redis.call('LLEN', log)
local horizon = now - window
while count > 0 and tonumber(redis.call('LINDEX', log, -1)) < horizon do
  redis.call('RPOP', log)
  count = count - 1
end
if count >= limit then
  return {0, 0, tonumber(redis.call('LINDEX', log, limit - 1)) + window + 1 - now}
end
redis.call('LPUSH', log, string.format('%.0f', now))
redis.call('PEXPIRE', log, math.floor(window / 1000) + 1)
count = count + 1
if count < limit then
  return {1, limit - count, 0}
end
return {1, 0, tonumber(redis.call('LINDEX', log, limit - 1)) + window + 1 - now}
"""
SCRIPT_SHA = hashlib.sha1(SLIDING_WINDOW_SCRIPT.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    limit: int
    remaining: int
    # Whole seconds until a next request of the key would be admitted (0: one would be now), rounded up.
    reset_seconds: int
    allowed: bool


def log_key(key_id: uuid.UUID) -> str:
    """The key's log; the braces are a Redis Cluster hash tag."""
    return f"rl:{{{key_id.hex}}}"


def decision_from_reply(reply: object, limit: int) -> RateLimitDecision:
    """The script's reply, as a decision; ResponseError if it is not one."""
    if not (isinstance(reply, list) and len(reply) == 3 and all(isinstance(n, int) for n in reply)):
        raise ResponseError(f"unexpected reply to the rate-limit script: {reply!r}")
    admitted, remaining, wait_us = reply
    return RateLimitDecision(
        limit=limit,
        remaining=remaining,
        reset_seconds=math.ceil(wait_us / 1_000_000),
        allowed=admitted == 1,
    )


class RateLimiter:
    """Decides each request of a key against its limit. Fails open: when Redis is unreachable the API keeps
    serving (logged). `window_s` is 60 in the app; tests pass a shorter one."""

    def __init__(self, redis: RedisPipe, window_s: int = WINDOW_SECONDS) -> None:
        self._redis = redis
        self.window_s = window_s
        self._window_us = str(window_s * 1_000_000)
        self._skip_until = 0.0
        self._last_warning = 0.0

    async def hit(self, key_id: uuid.UUID, limit: int, now_us: int | None = None) -> RateLimitDecision | None:
        """Counts one request of the key if it is admitted; None when Redis is unreachable (fail open).
        `now_us` replaces Redis's clock, for tests only."""
        now = time.monotonic()
        if now < self._skip_until:
            return None
        args: tuple[str | int, ...] = (log_key(key_id), limit, self._window_us)
        if now_us is not None:
            args += (now_us,)
        try:
            reply = await self._redis.request(encode_command("EVALSHA", SCRIPT_SHA, 1, *args), replies=1)
            if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
                # Redis restarted (or its script cache was flushed): the script itself, in this request.
                reply = await self._redis.request(
                    encode_command("EVAL", SLIDING_WINDOW_SCRIPT, 1, *args), replies=1
                )
            return decision_from_reply(reply, limit)
        except (RedisError, OSError) as exc:  # RedisUnavailable is a ConnectionError, an OSError
            self._skip_until = now + RETRY_AFTER_FAILURE_S
            if now - self._last_warning >= WARNING_INTERVAL_S or self._last_warning == 0.0:
                self._last_warning = now
                logger.warning("rate limiting is failing open: Redis is unreachable (%s)", exc)
            return None
