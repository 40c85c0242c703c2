"""A server-rendered SVG bar chart of requests per day, stacked by outcome."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.usage.services import OUTCOMES, UsageDay

OUTCOME_LABELS = {
    "success": "Success",
    "client_error": "Client error",
    "rate_limited": "Rate-limited",
    "server_error": "Server error",
}
WIDTH = 720
HEIGHT = 220
MARGIN_LEFT = 44
MARGIN_BOTTOM = 22
MARGIN_TOP = 8


@dataclass(frozen=True, slots=True)
class Segment:
    outcome: str
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    segments: list[Segment]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]
    baseline: float
    peak: int


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times 10^n at or above value, so the axis reads in round numbers."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def build_chart(days: list[UsageDay]) -> Chart:
    plot_width = WIDTH - MARGIN_LEFT
    plot_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    baseline = float(HEIGHT - MARGIN_BOTTOM)
    peak = max((day.total for day in days), default=0)
    top = nice_ceiling(peak)
    slot = plot_width / max(len(days), 1)
    bar_width = max(slot * 0.7, 1.0)
    segments: list[Segment] = []
    x_labels: list[tuple[float, str]] = []
    for index, day in enumerate(days):
        x = MARGIN_LEFT + index * slot + (slot - bar_width) / 2
        y = baseline
        for outcome in OUTCOMES:
            requests = getattr(day, outcome)
            if not requests:
                continue
            height = requests / top * plot_height
            y -= height
            title = f"{day.day.isoformat()}: {requests} {OUTCOME_LABELS[outcome].lower()}"
            segments.append(
                Segment(outcome, round(x, 2), round(y, 2), round(bar_width, 2), round(height, 2), title)
            )
        if index % 7 == 0 or index == len(days) - 1:
            x_labels.append((round(x + bar_width / 2, 2), day.day.strftime("%-d %b")))
    y_ticks = [
        (round(baseline - plot_height * fraction, 2), round(top * fraction)) for fraction in (0, 0.5, 1)
    ]
    return Chart(WIDTH, HEIGHT, segments, y_ticks, x_labels, baseline, peak)
