"""GET /health: 200 when the database and Redis answer, 503 naming whichever does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.lib import redis_pipe
from app.settings import Settings
from tests.api_helpers import recorded_sql
from tests.fixtures.app import client_for
from tests.fixtures.database import make_settings
from tests.fixtures.server import free_port

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


async def test_health_is_ok_when_database_and_redis_answer(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_health_is_one_redis_round_trip_and_one_statement(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the web process's pipelined Redis connection (redis-py's client sends nothing), and one SELECT."""
    assert (await client.get("/health")).status_code == 200  # connected
    sent: list[bytes] = []
    commands: list[Any] = []
    send, execute = redis_pipe._Protocol.send, Redis.execute_command

    def counted_send(self: redis_pipe._Protocol, payload: bytes, replies: int) -> Any:
        sent.append(payload)
        return send(self, payload, replies)

    async def counted_execute(self: Redis, *args: Any, **options: Any) -> Any:
        commands.append(args[0])
        return await execute(self, *args, **options)

    monkeypatch.setattr(redis_pipe._Protocol, "send", counted_send)
    monkeypatch.setattr(Redis, "execute_command", counted_execute)
    with recorded_sql(app) as statements:
        response = await client.get("/health")
    assert response.status_code == 200
    assert sent == [redis_pipe.encode_command("PING")]
    assert commands == []
    assert len(statements) == 1 and statements[0].startswith("SELECT"), statements


async def test_health_needs_no_sign_in(client: Client) -> None:
    response = await client.get("/health", follow_redirects=False)
    assert response.status_code == 200


async def test_unreachable_redis_makes_health_503(settings: Settings, tmp_path: Path) -> None:
    broken = make_settings(settings.database_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    async with client_for(broken) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}


async def test_unreachable_database_makes_health_503(redis_url: str, tmp_path: Path) -> None:
    database_url = f"postgresql+asyncpg://app:secret@127.0.0.1:{free_port()}/booking"
    async with client_for(make_settings(database_url, redis_url, tmp_path)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable", "redis": "ok"}
