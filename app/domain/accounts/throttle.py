"""Sign-in throttling: repeated failures for one account from one address, or from one address overall, wait."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

WINDOW_S = 15 * 60
MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS = 5
MAX_FAILURES_PER_ADDRESS = 30


def _keys(email: str, address: str) -> tuple[str, str]:
    # Hashed so Redis holds no email addresses.
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"signin:fail:{account}:{address}", f"signin:fail:addr:{address}"


class SignInThrottle:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def wait_seconds(self, email: str, address: str) -> int:
        """0 when a sign-in may be tried now; otherwise how long to wait."""
        pair, overall = _keys(email, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in (pair, overall):
                pipe.get(key)
                pipe.ttl(key)
            pair_count, pair_ttl, overall_count, overall_ttl = await pipe.execute()
        waits = [
            int(ttl)
            for count, ttl, limit in (
                (pair_count, pair_ttl, MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS),
                (overall_count, overall_ttl, MAX_FAILURES_PER_ADDRESS),
            )
            if count is not None and int(count) >= limit
        ]
        return max([max(wait, 1) for wait in waits], default=0)

    async def record_failure(self, email: str, address: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in _keys(email, address):
                pipe.incr(key)
                pipe.expire(key, WINDOW_S, nx=True)
            await pipe.execute()

    async def record_success(self, email: str, address: str) -> None:
        pair, _ = _keys(email, address)
        await self._redis.delete(pair)
