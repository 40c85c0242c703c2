"""The wording of times on the staff pages: `time_ago` for the Last Used column and `exact_time`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.web.formatting import exact_time, local_date, time_ago, time_tooltip

NOW = datetime(2025, 6, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(seconds=59, microseconds=999_999), "just now"),
        (timedelta(seconds=60), "1 minute ago"),
        (timedelta(seconds=119), "1 minute ago"),
        (timedelta(minutes=2), "2 minutes ago"),
        (timedelta(minutes=5), "5 minutes ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=1, minutes=59), "1 hour ago"),
        (timedelta(hours=2), "2 hours ago"),
        (timedelta(hours=23, minutes=59), "23 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=2), "2 days ago"),
        (timedelta(days=29, hours=23), "29 days ago"),
        (timedelta(days=30), "1 month ago"),
        (timedelta(days=59), "1 month ago"),
        (timedelta(days=60), "2 months ago"),
        (timedelta(days=364), "12 months ago"),
        (timedelta(days=365), "1 year ago"),
        (timedelta(days=729), "1 year ago"),
        (timedelta(days=730), "2 years ago"),
        (timedelta(days=3650), "10 years ago"),
    ],
)
def test_time_ago_boundaries(age: timedelta, expected: str) -> None:
    assert time_ago(NOW - age, NOW) == expected


def test_time_ago_of_a_moment_in_the_future_is_just_now() -> None:
    # Clock skew between app servers can put last_used_at slightly after "now".
    assert time_ago(NOW + timedelta(seconds=5), NOW) == "just now"


def test_exact_time_is_utc_to_the_second() -> None:
    assert exact_time(datetime(2025, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)) == "2025-01-02 03:04:05 UTC"
    assert exact_time(datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)) == "2024-12-31 23:59:59 UTC"


def test_tooltips_show_the_business_clock_first_and_utc_beside_it() -> None:
    moment = datetime(2025, 7, 2, 8, 30, tzinfo=UTC)
    assert (
        time_tooltip(moment, ZoneInfo("Europe/London"))
        == "Wed 2 Jul 2025, 09:30 BST (2025-07-02 08:30:00 UTC)"
    )
    # The day is the business's: late evening in New York is the next day in UTC.
    assert local_date(datetime(2025, 1, 3, 2, 0, tzinfo=UTC), ZoneInfo("America/New_York")) == "2 Jan 2025"
