"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server does.

wrk is closed-loop: when the server stalls, wrk stops sending, and the stall never shows in its tail
latencies (coordinated omission). Here request i is due at t0 + i / rate; its latency is measured from that
due time, so a stall is charged to every request that should have been sent during it. Requests wait in
the generator when every connection is busy (up to `max_connections`), and that wait counts too.

Timers on the event loop have millisecond resolution, so requests leave in small bursts once per
millisecond; the up-to-1 ms lateness is part of every measured latency, guarded or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast


@dataclass
class OpenLoopResult:
    target_rps: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    non_2xx: int = 0
    connection_errors: int = 0  # lost twice: a stale keep-alive connection is retried once, as clients do
    unanswered: int = 0
    connect_failures: dict[str, int] = field(default_factory=dict)  # not request errors: retried
    latencies_s: list[float] = field(default_factory=list)  # from the due time: what a client sees
    service_s: list[float] = field(default_factory=list)  # from the actual write: the server's share
    max_send_lag_s: float = 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.connection_errors + self.unanswered

    def summary(self) -> dict[str, object]:
        return {
            "target_rps": round(self.target_rps, 1),
            "achieved_rps": round(self.ok / self.duration_s, 1) if self.duration_s else 0.0,
            "duration_s": self.duration_s,
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "connection_errors": self.connection_errors,
            "unanswered": self.unanswered,
            "connect_failures": self.connect_failures,
            "max_send_lag_ms": round(self.max_send_lag_s * 1000, 2),
            "latency_ms": percentiles(self.latencies_s),
            "service_time_ms": percentiles(self.service_s),
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": at(1.0)}


class _Flight(NamedTuple):
    due: float
    sent: float
    counted: bool
    request: bytes
    attempt: int


class _Connection(asyncio.Protocol):
    def __init__(self, generator: _Generator) -> None:
        self._generator = generator
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.in_flight: _Flight | None = None
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports only quack like one

    def send(self, request: bytes, due: float, counted: bool, attempt: int) -> None:
        assert self.transport is not None
        self.in_flight = _Flight(due, time.perf_counter(), counted, request, attempt)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            status = int(self._buffer[9:12])
            del self._buffer[:total]
            flight, self.in_flight = self.in_flight, None
            if flight is not None:
                self._generator.on_response(self, status, flight)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        flight, self.in_flight = self.in_flight, None
        self._generator.on_lost(self, flight)


class _Generator:
    def __init__(self, host: str, port: int, result: OpenLoopResult, max_connections: int) -> None:
        self._host = host
        self._port = port
        self._result = result
        self._max_connections = max_connections
        self._idle: deque[_Connection] = deque()
        self.connections: list[_Connection] = []
        self._backlog: deque[tuple[bytes, float, bool, int]] = deque()
        self._open = 0
        self._opening = 0
        self.outstanding = 0
        self.drained = asyncio.Event()

    async def open_connections(self, count: int) -> None:
        await asyncio.gather(*(self._open_one() for _ in range(count)))

    async def _open_one(self) -> None:
        self._opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(lambda: _Connection(self), self._host, self._port)
        except OSError as exc:
            reason = type(exc).__name__ + (f" errno {exc.errno}" if exc.errno else "")
            self._result.connect_failures[reason] = self._result.connect_failures.get(reason, 0) + 1
            if self._backlog and self._open + self._opening == 0:
                asyncio.get_running_loop().call_later(0.01, self._reopen)
            return
        finally:
            self._opening -= 1
        self._open += 1
        self.connections.append(protocol)
        self._release(protocol)

    def _reopen(self) -> None:
        asyncio.get_running_loop().create_task(self._open_one())

    def submit(self, request: bytes, due: float, counted: bool, attempt: int = 0) -> None:
        self.outstanding += 1
        # Set whenever nothing is in flight, which happens between requests at light loads: without this,
        # the wait at the end of a run returned at once and the last requests were counted as unanswered.
        self.drained.clear()
        if counted and attempt == 0:
            self._result.sent += 1
        if self._idle:
            self._idle.popleft().send(request, due, counted, attempt)
            return
        self._backlog.append((request, due, counted, attempt))
        if self._open + self._opening < self._max_connections:
            asyncio.get_running_loop().create_task(self._open_one())

    def _release(self, connection: _Connection) -> None:
        if not connection.alive:
            return
        if self._backlog:
            connection.send(*self._backlog.popleft())
        else:
            self._idle.append(connection)

    def _finish(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.drained.set()

    def on_response(self, connection: _Connection, status: int, flight: _Flight) -> None:
        now = time.perf_counter()
        if flight.counted:
            if 200 <= status < 300:
                self._result.ok += 1
            else:
                self._result.non_2xx += 1
            self._result.latencies_s.append(now - flight.due)
            self._result.service_s.append(now - flight.sent)
        self._finish()
        self._release(connection)

    def on_lost(self, connection: _Connection, flight: _Flight | None) -> None:
        self._open -= 1
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)
        if flight is None:
            return
        self._finish()
        if flight.attempt == 0:
            # A keep-alive connection the server closed as the request went out (what every HTTP client
            # retries): send it again once, on another connection; the wait still counts from its due time.
            self.submit(flight.request, flight.due, flight.counted, attempt=1)
        elif flight.counted:
            self._result.connection_errors += 1


def build_requests(host: str, path: str, keys: Sequence[str]) -> list[bytes]:
    return [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode() for key in keys
    ]


async def run_open_loop(
    host: str,
    port: int,
    path: str,
    keys: Sequence[str],
    rate: float,
    duration_s: float,
    warmup_s: float = 3.0,
    max_connections: int = 512,
    drain_timeout_s: float = 10.0,
) -> OpenLoopResult:
    """Send `rate` requests per second for warmup_s (not recorded) then duration_s (recorded)."""
    result = OpenLoopResult(target_rps=rate, duration_s=duration_s)
    requests = build_requests(host, path, keys)
    generator = _Generator(host, port, result, max_connections)
    await generator.open_connections(min(64, max_connections))
    warmup_count = int(warmup_s * rate)
    total = warmup_count + int(duration_s * rate)
    start = time.perf_counter() + 0.01
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due_count = min(total, int((now - start) * rate) + 1)
        while sent < due_count:
            due = start + sent / rate
            result.max_send_lag_s = max(result.max_send_lag_s, now - due)
            generator.submit(requests[sent % len(requests)], due, counted=sent >= warmup_count)
            sent += 1
        next_due = start + sent / rate
        await asyncio.sleep(max(0.0, next_due - time.perf_counter()))
    if generator.outstanding:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(generator.drained.wait(), timeout=drain_timeout_s)
    result.unanswered = generator.outstanding
    for connection in generator.connections:
        if connection.transport is not None:
            connection.transport.close()
    return result


def merge(results: Sequence[OpenLoopResult]) -> OpenLoopResult:
    """Slices of one interleaved series as one run."""
    merged = OpenLoopResult(target_rps=results[0].target_rps, duration_s=sum(r.duration_s for r in results))
    for result in results:
        merged.sent += result.sent
        merged.ok += result.ok
        merged.non_2xx += result.non_2xx
        merged.connection_errors += result.connection_errors
        merged.unanswered += result.unanswered
        for reason, count in result.connect_failures.items():
            merged.connect_failures[reason] = merged.connect_failures.get(reason, 0) + count
        merged.latencies_s.extend(result.latencies_s)
        merged.service_s.extend(result.service_s)
        merged.max_send_lag_s = max(merged.max_send_lag_s, result.max_send_lag_s)
    return merged
