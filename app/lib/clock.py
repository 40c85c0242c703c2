"""The current time, as one injected function: the app reads it from here, never from datetime.now().

A clock is any zero-argument callable returning an aware UTC datetime. The app's factory takes one
(`system_clock` unless told otherwise) and hands it to whatever needs "now": booking and availability, key
expiry, idempotency records, usage windows and pruning. Tests pass a `SettableClock` and move it, instead of
waiting for real time to pass. (The rate limiter's windows are Redis's clock, not this one.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class SettableClock:
    """A clock for tests: the system's time moved by what the test advances it, or frozen where it sets it."""

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self._frozen if self._frozen is not None else datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Jump ahead (or back, with a negative delta); a frozen clock stays frozen at the new time."""
        if self._frozen is not None:
            self._frozen += delta
        else:
            self._offset += delta
        return self()

    def set(self, now: datetime) -> None:
        """Stand still at `now` (aware) until set or advanced again."""
        if now.utcoffset() is None:
            raise ValueError("a clock tells aware time")
        self._frozen = now.astimezone(UTC)
