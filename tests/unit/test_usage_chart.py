"""The usage chart's geometry and wording, from summaries made by hand (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from app.domain.usage.chart import (
    build_chart,
    compact,
    nice_ticks,
    outcome_label,
    percent,
    render_svg,
    text_width,
)
from app.domain.usage.services import RANGES, UsageBucket, UsageSummary, ordered_outcomes

LONDON = ZoneInfo("Europe/London")


def summary(range_name: str, counts: list[dict[str, int]]) -> UsageSummary:
    usage_range = RANGES[range_name]
    step = timedelta(hours=1) if usage_range.hourly else timedelta(days=1)
    first = datetime(2026, 12, 2, tzinfo=LONDON) - step * (len(counts) - 1)
    buckets = [UsageBucket(first + step * n, dict(day)) for n, day in enumerate(counts)]
    outcomes = ordered_outcomes(outcome for day in counts for outcome in day)
    totals = {outcome: sum(day.get(outcome, 0) for day in counts) for outcome in outcomes}
    return UsageSummary(usage_range, "Europe/London", buckets, outcomes, totals, None)


def test_ticks_are_round_numbers_from_zero_to_at_least_the_peak() -> None:
    assert nice_ticks(0) == [0]
    assert nice_ticks(3) == [0, 1, 2, 3]  # not "0, 2, 5" for three requests
    assert nice_ticks(1234) == [0, 500, 1000, 1500]
    assert [compact(tick) for tick in nice_ticks(1_440_000)] == ["0", "500k", "1M", "1.5M"]
    assert [percent(tick) for tick in nice_ticks(0.0012, whole=False)] == ["0%", "0.05%", "0.1%", "0.15%"]


def test_an_empty_range_has_no_made_up_scale_and_says_so() -> None:
    chart = build_chart(summary("7d", [{}] * 7))
    assert [tick.label for tick in chart.y_ticks] == ["0"]
    assert chart.empty_message == "No requests in the last 7 days"
    assert "No requests in the last 7 days</text>" in render_svg(chart, summary("7d", [{}] * 7))


def test_x_labels_never_overlap_at_any_width_or_range() -> None:
    for range_name, periods in (("24h", 24), ("7d", 7), ("30d", 30), ("90d", 90)):
        usage = summary(range_name, [{"success": n + 1} for n in range(periods)])
        for layout in ("wide", "narrow"):
            chart = build_chart(usage, layout)
            assert chart.x_labels, (range_name, layout)
            extents = [
                (label.x - text_width(label.label) / 2, label.x + text_width(label.label) / 2)
                for label in chart.x_labels
            ]
            assert all(left >= 0 and right <= chart.width for left, right in extents)
            assert all(a[1] + 10 <= b[0] for a, b in itertools.pairwise(extents)), (
                range_name,
                layout,
            )
            # The newest bucket is always labelled.
            assert chart.x_labels[-1].label == chart.slots[-1].label


def test_small_outcomes_stay_visible_and_get_an_error_line() -> None:
    days = [{"success": 1_000_000, "server_error": 1}] + [{"success": 900_000}] * 6
    chart = build_chart(summary("7d", days))
    [first, *_] = chart.slots
    errors = [segment for segment in first.segments if segment.css_class == "server_error"]
    assert errors and errors[0].height >= 2
    assert chart.error_path.startswith("M") and chart.error_ticks[-1].label == "0.0001%"
    assert first.tip == [
        "Sat 26 Dec 2026" if False else first.tip[0],
        "1,000,001 requests",
        "Success: 1,000,000",
        "Server error: 1",
        "Not successful: 0.0001%",
    ]


def test_an_outcome_of_its_own_is_a_series_with_its_own_colour_and_name() -> None:
    usage = summary("7d", [{"success": 3, "key_revoked": 2}] * 7)
    assert usage.outcomes == ["success", "client_error", "rate_limited", "server_error", "key_revoked"]
    chart = build_chart(usage)
    assert {segment.css_class for segment in chart.slots[0].segments} == {"success", "extra-0"}
    assert outcome_label("key_revoked") == "Key revoked"
    assert "Key revoked: 2" in chart.slots[0].tip


def test_hours_are_labelled_in_the_organizations_zone() -> None:
    usage = summary("24h", [{"success": 1}] * 24)
    chart = build_chart(usage)
    assert chart.slots[-1].label == "00:00" and chart.slots[-1].tip[0] == "Wed 2 Dec, 00:00 to 01:00"
    assert date(2026, 12, 2) == usage.buckets[-1].start.date()
    assert usage.buckets[-1].start.utcoffset() == timedelta(0) and usage.buckets[-1].start.tzinfo != UTC
