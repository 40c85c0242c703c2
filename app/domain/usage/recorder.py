"""Usage events off the hot path: requests append to an in-process buffer; batches go to the worker via SAQ.

A request costs no I/O here. A flusher task hands the buffer to SAQ as one job per batch, at least every
second or every BATCH_SIZE events, and once more on shutdown. While Redis is down the buffer keeps up to
MAX_BUFFERED events and retries; anything beyond that is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

from redis.exceptions import RedisError
from saq.queue.base import Queue

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
BATCH_SIZE = 500
MAX_BUFFERED = 100_000
SHUTDOWN_DEADLINE_S = 5.0
FOLD_JOB = "fold_usage"
# Jobs are retried (SAQ's default is a single attempt: a worker dying mid-batch would lose it) and swept
# back to the queue after their timeout; the batch id makes a retry count nothing twice.
JOB_OPTIONS = {"timeout": 30, "retries": 10, "retry_delay": 1.0, "retry_backoff": 30.0, "ttl": 600}

# One event: key id (hex), unix time, method, route template, status, latency in microseconds. The status is
# the response's, or REFUSED_REVOKED / REFUSED_EXPIRED for a request refused because its key is revoked or
# expired: outcomes of their own, so the key page can say who still calls a dead key.
UsageEvent = tuple[str, float, str, str, int | str, int]
REFUSED_REVOKED = "rvk"
REFUSED_EXPIRED = "exp"


@dataclass
class RecorderStats:
    enqueued_batches: int = 0
    enqueued_events: int = 0
    dropped_events: int = 0
    failed_flushes: int = 0


class UsageRecorder:
    def __init__(self, queue: Queue, max_buffered: int = MAX_BUFFERED) -> None:
        self._queue = queue
        self._max_buffered = max_buffered
        self._buffer: deque[UsageEvent] = deque()
        # A batch taken from the buffer keeps its id until SAQ has it.
        self._outgoing: tuple[str, list[UsageEvent]] | None = None
        self._wakeup: asyncio.Event | None = None  # made in start(), on the loop that serves requests
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_drop_warning = 0.0
        self.stats = RecorderStats()

    def record(
        self, key_id: uuid.UUID, at: float, method: str, route: str, status: int | str, latency_us: int
    ) -> None:
        """Called once per request that identified a key: an append, nothing more."""
        self._buffer.append((key_id.hex, at, method, route, status, latency_us))
        if self.pending > self._max_buffered:
            self._buffer.popleft()
            self.stats.dropped_events += 1
            self._warn_dropped()
        if len(self._buffer) >= BATCH_SIZE and self._wakeup is not None:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._buffer) + (len(self._outgoing[1]) if self._outgoing else 0)

    async def start(self) -> None:
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._wakeup), name="usage-flusher")

    async def stop(self) -> None:
        """Stop the flusher and hand over what is left (bounded by a short deadline if Redis is down)."""
        if self._task is not None and self._wakeup is not None:
            # Asked to stop rather than cancelled: a cancellation that lands as the wakeup fires can be
            # swallowed by wait_for on Python 3.11, and the flusher would then run (and shutdown wait) forever.
            self._stopping = True
            self._wakeup.set()
            _, running = await asyncio.wait({self._task}, timeout=SHUTDOWN_DEADLINE_S)
            if running:
                self._task.cancel()
                await asyncio.wait(running, timeout=1.0)
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_DEADLINE_S):
                await self.flush()
        if self.pending:
            logger.warning("usage: %d events not delivered at shutdown (Redis unreachable)", self.pending)

    async def _run(self, wakeup: asyncio.Event) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_INTERVAL_S):
                    await wakeup.wait()
            wakeup.clear()
            if self._stopping:
                return
            await self.flush()

    async def flush(self) -> None:
        """Hand over what is buffered now, in batches of at most BATCH_SIZE events. Events recorded while
        it runs wait for the next full batch or the next tick: draining them too would keep a busy process
        enqueueing a batch of a few events per round trip (a job and a Redis write each, for every handful
        of requests)."""
        waiting = len(self._buffer)
        while waiting or self._outgoing:
            if self._outgoing is None:
                count = min(BATCH_SIZE, waiting, len(self._buffer))
                if count == 0:
                    return
                waiting -= count
                self._outgoing = (str(uuid.uuid4()), [self._buffer.popleft() for _ in range(count)])
            batch_id, events = self._outgoing
            try:
                # The batch keeps its id across retries, and key=batch_id makes SAQ ignore a second enqueue:
                # an enqueue that timed out after Redis took it is not counted twice.
                await self._queue.enqueue(
                    FOLD_JOB, key=batch_id, batch_id=batch_id, events=events, **JOB_OPTIONS
                )
            except (RedisError, OSError) as exc:
                self.stats.failed_flushes += 1
                logger.warning(
                    "usage: could not hand %d events to the queue, will retry: %s", self.pending, exc
                )
                return
            self._outgoing = None
            self.stats.enqueued_batches += 1
            self.stats.enqueued_events += len(events)

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning >= 30.0:
            self._last_drop_warning = now
            logger.warning(
                "usage: buffer full (%d events), %d dropped so far",
                self._max_buffered,
                self.stats.dropped_events,
            )
