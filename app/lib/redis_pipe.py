"""One pipelined Redis connection for the API's hot path: requests share it, each write answered in order.

redis-py checks a connection out of a pool, writes through asyncio streams, and reads each reply under a
timeout context: about 180 µs of CPU per rate-limit transaction in the web process (docs/BENCHMARKS.md).
This protocol writes pre-encoded commands onto one connection, parses replies with hiredis as they arrive
and hands each caller the reply to its own last command: Redis answers in order, and a caller's commands
are written in one piece, so a MULTI ... EXEC block is never interleaved with another caller's commands.

Failure is explicit and cheap: a connection that does not answer within `timeout_s` is closed, and every
caller waiting on it gets RedisUnavailable; the next call connects again.

What to connect to, and how, is redis-py's reading of the URL (the connection it would make, never opened):
its TLS context (rediss://, ssl_cert_reqs, ssl_ca_certs, ssl_ca_path, ssl_certfile and ssl_keyfile, ...),
its credentials (username, password), database and client name, so both clients of the web process reach
the same server the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.credentials import UsernamePasswordCredentialProvider

DEFAULT_TIMEOUT_S = 1.0


class RedisUnavailable(ConnectionError):
    """No answer from Redis: not connected, connection lost, or no reply in time."""


def encode_command(*parts: str | bytes | int) -> bytes:
    """One command in the Redis protocol (RESP)."""
    encoded = [part if isinstance(part, bytes) else str(part).encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        # Per caller, in write order: its future, the replies still to come, and when it was sent.
        self.pending: deque[list[Any]] = deque()
        self.lost = asyncio.get_running_loop().create_future()
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            entry = self.pending[0]
            entry[1] -= 1
            if entry[1] == 0:
                self.pending.popleft()
                if not entry[0].done():  # the caller may have given up (cancelled)
                    entry[0].set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisUnavailable(f"connection to Redis lost: {exc or 'closed'}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def fail(self, error: Exception) -> None:
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(error)

    def send(self, payload: bytes, replies: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        idle = not self.pending
        self.pending.append([future, replies, time.monotonic()])
        if idle and self.transport is not None and not self.transport.is_closing():
            # Nothing in flight: this round trip starts now, not at the next loop turn.
            self.transport.write(payload)
            return future
        # Otherwise the writes of one turn of the event loop go out together: one system call, one reply
        # read, for all the requests that reached their rate limit check meanwhile.
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        payloads, self._outgoing = self._outgoing, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(payloads))


class RedisPipe:
    """A lazily connected, shared, pipelined connection. `request` is safe to call from many tasks at once."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        # Raises ValueError for a URL redis-py would refuse, as the app's other client does.
        pool = ConnectionPool.from_url(url)
        self._connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        self._ssl = (
            self._connection.ssl_context.get() if isinstance(self._connection, SSLConnection) else None
        )
        self._timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def request(self, payload: bytes, replies: int) -> Any:
        """Write `payload` (commands encoded with encode_command) and return the last of its `replies`
        replies. Error replies are returned as hiredis.ReplyError instances, not raised."""
        reply = self.send_now(payload, replies)
        if reply is None:
            reply = (await self._connect()).send(payload, replies)
        return await reply

    def send_now(self, payload: bytes, replies: int) -> asyncio.Future[Any] | None:
        """`request` without waiting: the future of the reply, or None when not connected (then call
        `request`, which connects). The caller awaits the future, or cancels it if it no longer cares."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            return None
        return protocol.send(payload, replies)

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        target = self._connection
        try:
            async with asyncio.timeout(self._timeout_s):
                if isinstance(target, UnixDomainSocketConnection):
                    _, protocol = await loop.create_unix_connection(_Protocol, target.path)
                else:
                    assert isinstance(target, Connection)
                    _, protocol = await loop.create_connection(
                        _Protocol, target.host, target.port, ssl=self._ssl
                    )
                for command in await self._handshake():
                    reply = await protocol.send(command, 1)
                    if isinstance(reply, hiredis.ReplyError):
                        protocol.transport.close()  # type: ignore[union-attr]
                        raise RedisUnavailable(f"Redis refused the connection: {reply}")
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise RedisUnavailable(f"cannot connect to Redis: {exc}") from exc
        self._protocol = protocol
        self._arm_watchdog()
        return protocol

    async def _handshake(self) -> list[bytes]:
        """AUTH, SELECT and CLIENT SETNAME as redis-py sends them for the same URL."""
        target = self._connection
        commands = []
        if target.credential_provider or target.username or target.password:
            provider = target.credential_provider or UsernamePasswordCredentialProvider(
                target.username, target.password
            )
            commands.append(encode_command("AUTH", *await provider.get_credentials_async()))
        if target.db:
            commands.append(encode_command("SELECT", target.db))
        if target.client_name:
            commands.append(encode_command("CLIENT", "SETNAME", target.client_name))
        return commands

    def _arm_watchdog(self) -> None:
        """One timer for all callers, instead of a timeout per request: a connection whose oldest request
        has waited longer than timeout_s is closed, failing everyone waiting on it."""
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._timeout_s / 4, self._check_stalled)

    def _check_stalled(self) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            self._watchdog = None
            return
        if protocol.pending and time.monotonic() - protocol.pending[0][2] > self._timeout_s:
            protocol.fail(RedisUnavailable(f"no reply from Redis within {self._timeout_s} s"))
            protocol.transport.abort()
            self._watchdog = None
            return
        self._arm_watchdog()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.lost), timeout=1.0)
