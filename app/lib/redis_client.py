"""Redis clients, sized to hold up under load."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# redis-py's default async pool raises on the 101st concurrent command; a blocking pool makes callers
# wait for a free connection instead, up to POOL_TIMEOUT_S.
MAX_CONNECTIONS = 64
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 1.0


def create_redis(url: str, *, socket_timeout: float | None = SOCKET_TIMEOUT_S) -> Redis:
    """A client on its own blocking pool. The queue passes socket_timeout=None: SAQ's dequeue blocks on purpose."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_TIMEOUT_S,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
    )
    return Redis(connection_pool=pool)
