"""GET /health: 200 when the database and Redis answer, 503 naming whichever does not."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.settings import Settings
from tests.conftest import dispose_engines, make_settings

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


def closed_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound briefly to pick it, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[Client]:
    app = create_app(settings)
    try:
        async with AsyncTestClient(app, base_url="http://testserver.local") as client:
            yield client
    finally:
        await dispose_engines(app)


async def test_health_is_ok_when_database_and_redis_answer(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_health_needs_no_sign_in(client: Client) -> None:
    response = await client.get("/health", follow_redirects=False)
    assert response.status_code == 200


async def test_unreachable_redis_makes_health_503(settings: Settings, tmp_path: Path) -> None:
    broken = make_settings(settings.database_url, f"redis://127.0.0.1:{closed_local_port()}/0", tmp_path)
    async with client_for(broken) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}


async def test_unreachable_database_makes_health_503(redis_url: str, tmp_path: Path) -> None:
    database_url = f"postgresql+asyncpg://app:secret@127.0.0.1:{closed_local_port()}/booking"
    async with client_for(make_settings(database_url, redis_url, tmp_path)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable", "redis": "ok"}
