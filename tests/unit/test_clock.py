"""The test clock the app is given in tests: the real time until moved, then only as moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.lib.clock import SettableClock, system_clock


def test_the_system_clock_tells_aware_utc_time() -> None:
    before = datetime.now(UTC)
    now = system_clock()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)


def test_a_settable_clock_follows_real_time_until_moved() -> None:
    clock = SettableClock()
    before = datetime.now(UTC)
    assert before <= clock() <= datetime.now(UTC)
    clock.advance(timedelta(days=1))
    assert before + timedelta(days=1) <= clock() <= datetime.now(UTC) + timedelta(days=1)


def test_a_set_clock_stands_still_and_advances_from_there() -> None:
    clock = SettableClock()
    noon = datetime(2026, 3, 29, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    clock.set(noon)
    assert clock() == noon and clock().tzinfo is UTC
    assert clock.advance(timedelta(minutes=5)) == noon + timedelta(minutes=5) == clock()
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 3, 29, 12, 0))
