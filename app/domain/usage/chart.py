"""A server-drawn SVG chart of a key's requests per hour or day, stacked by outcome, with an error-rate line.

Drawn twice from the same numbers: a wide layout and a narrow one for phones (the page shows one of the two),
because an SVG scaled down to a phone's width shrinks its text with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from markupsafe import Markup, escape

from app.domain.usage.services import OUTCOMES, REFUSED_OUTCOMES, UsageBucket, UsageSummary

OUTCOME_LABELS = {
    "success": "Success",
    "client_error": "Client error",
    "rate_limited": "Rate-limited",
    "server_error": "Server error",
    "refused_revoked": "Refused: key revoked",
    "refused_expired": "Refused: key expired",
}
EXTRA_SERIES = 4  # colours for outcomes beyond the known four, reused in turn
FONT_SIZE = 12
# A glyph of the chart's sans-serif font at 12 px is at most this wide on average (digits, short month names).
CHAR_WIDTH = 7.2
LABEL_GAP = 10
MIN_SEGMENT = 2.0  # a non-zero outcome is never thinner than this, so none vanishes at scale


def outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome) or outcome.replace("_", " ").replace("-", " ").capitalize()


def outcome_class(outcome: str, outcomes: list[str]) -> str:
    """The CSS class of an outcome's colour: its own for the known ones and the refusals of a dead key, one of
    a few others for the rest."""
    if outcome in OUTCOMES or outcome in REFUSED_OUTCOMES.values():
        return outcome
    return f"extra-{(outcomes.index(outcome) - len(OUTCOMES)) % EXTRA_SERIES}"


def nice_step(value: float) -> float:
    """The smallest 1, 2 or 5 times 10^n at or above value."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value * (1 - 1e-9):
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def nice_ticks(peak: float, target: int = 4, whole: bool = True) -> list[float]:
    """Round ticks from 0 to at or above peak, about `target` intervals (whole numbers for counts)."""
    if peak <= 0:
        return [0]
    step = nice_step(peak / target)
    if whole:
        step = max(step, 1)
    count = math.ceil(peak / step - 1e-9)
    return [round(step * n, 10) for n in range(count + 1)]


def compact(value: float) -> str:
    """1,500 → 1.5k, 2,000,000 → 2M: short tick labels that never collide."""
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= divisor:
            text = f"{value / divisor:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:g}"


def percent(value: float) -> str:
    """0.0005 → 0.05%, 0.028 → 2.8%, 0.4 → 40%: two significant digits at most, no float noise."""
    share = round(value * 100, 6)
    if share == 0:
        return "0%"
    return f"{share:.0f}%" if share >= 10 else f"{share:.2g}%"


def text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


@dataclass(frozen=True, slots=True)
class Segment:
    css_class: str
    y: float
    height: float


@dataclass(frozen=True, slots=True)
class Slot:
    index: int
    x: float  # left edge of the slot (the hover and tap target)
    width: float
    bar_x: float
    bar_width: float
    segments: list[Segment]
    label: str
    tip: list[str]  # the tooltip's lines

    @property
    def description(self) -> str:
        """The slot's accessible name, and what the tooltip shows (a line per part)."""
        return "; ".join(self.tip)


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class XLabel:
    x: float
    label: str


@dataclass
class Chart:
    layout: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    slots: list[Slot]
    y_ticks: list[Tick]
    x_labels: list[XLabel]
    empty_message: str | None
    # The share of requests that were not a success, on its own axis (right) when any were not.
    error_path: str = ""
    error_ticks: list[Tick] = field(default_factory=list)
    focused_index: int = 0

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top


def bucket_label(summary: UsageSummary, bucket: UsageBucket) -> str:
    return bucket.start.strftime("%H:%M") if summary.range.hourly else bucket.start.strftime("%-d %b")


def bucket_title(summary: UsageSummary, bucket: UsageBucket) -> str:
    """The bucket in full: "Tue 2 Dec 2026" or "Tue 2 Dec, 14:00 to 15:00"."""
    if summary.range.hourly:
        end = bucket.start + timedelta(hours=1)
        return f"{bucket.start.strftime('%a %-d %b, %H:%M')} to {end.strftime('%H:%M')}"
    return bucket.start.strftime("%a %-d %b %Y")


def error_rate(bucket: UsageBucket) -> float | None:
    total = bucket.total
    return (total - bucket.counts.get("success", 0)) / total if total else None


def tip_lines(summary: UsageSummary, bucket: UsageBucket) -> list[str]:
    lines = [bucket_title(summary, bucket), f"{bucket.total:,} requests"]
    lines += [
        f"{outcome_label(outcome)}: {bucket.counts[outcome]:,}"
        for outcome in summary.outcomes
        if bucket.counts.get(outcome)
    ]
    rate = error_rate(bucket)
    if rate:
        lines.append(f"Not successful: {percent(rate)}")
    return lines


def build_chart(summary: UsageSummary, layout: str = "wide", tips: list[list[str]] | None = None) -> Chart:
    """`tips`: each bucket's tooltip lines when already made (for the other layout)."""
    tips = tips or [tip_lines(summary, bucket) for bucket in summary.buckets]
    width = 720 if layout == "wide" else 360
    height = 260 if layout == "wide" else 240
    buckets = summary.buckets
    rates = [rate for rate in map(error_rate, buckets) if rate]
    peak = max((bucket.total for bucket in buckets), default=0)
    ticks = nice_ticks(peak)
    tick_labels = [compact(value) for value in ticks]
    error_ticks = nice_ticks(max(rates), whole=False) if rates else []
    error_labels = [percent(value) for value in error_ticks]
    left = max(text_width(label) for label in tick_labels) + LABEL_GAP
    right = width - (max(text_width(label) for label in error_labels) + LABEL_GAP if error_labels else 8)
    top, bottom = 14.0, height - 28.0
    plot_height = bottom - top
    top_value = ticks[-1] or 1

    def y_of(value: float) -> float:
        return round(bottom - value / top_value * plot_height, 2)

    slot_width = (right - left) / max(len(buckets), 1)
    bar_width = max(slot_width * 0.7, 1.0)
    slots: list[Slot] = []
    for index, bucket in enumerate(buckets):
        x = left + index * slot_width
        segments: list[Segment] = []
        y = bottom
        for outcome in summary.outcomes:
            requests = bucket.counts.get(outcome, 0)
            if not requests:
                continue
            segment_height = max(requests / top_value * plot_height, MIN_SEGMENT)
            y -= segment_height
            segments.append(
                Segment(outcome_class(outcome, summary.outcomes), round(y, 2), round(segment_height, 2))
            )
        slots.append(
            Slot(
                index=index,
                x=round(x, 2),
                width=round(slot_width, 2),
                bar_x=round(x + (slot_width - bar_width) / 2, 2),
                bar_width=round(bar_width, 2),
                segments=segments,
                label=bucket_label(summary, bucket),
                tip=tips[index],
            )
        )

    # Every k-th label, counted back from the newest (always labelled), so that no two labels can touch; one
    # at an edge is moved inside the chart, and one it would then touch is left out.
    widest = max((text_width(slot.label) for slot in slots), default=0)
    every = max(1, math.ceil((widest + LABEL_GAP) / slot_width)) if slots else 1
    x_labels: list[XLabel] = []
    next_left: float = width + LABEL_GAP  # the left edge of the label accepted to the right (none yet)
    for slot in reversed(slots):
        if (len(slots) - 1 - slot.index) % every:
            continue
        half = text_width(slot.label) / 2
        center = min(max(slot.x + slot.width / 2, half), width - half)
        if center + half + LABEL_GAP > next_left or center - half < 0:
            continue
        x_labels.insert(0, XLabel(round(center, 2), slot.label))
        next_left = center - half

    error_path = ""
    if error_ticks:
        error_top = error_ticks[-1]
        points = []
        pen_down = False
        for slot, bucket in zip(slots, buckets, strict=True):
            rate = error_rate(bucket)
            if rate is None:
                pen_down = False
                continue
            y = round(bottom - rate / error_top * plot_height, 2)
            points.append(f"{'L' if pen_down else 'M'}{round(slot.x + slot.width / 2, 2)},{y}")
            pen_down = True
        error_path = " ".join(points)

    return Chart(
        layout=layout,
        width=width,
        height=height,
        left=round(left, 2),
        right=round(right, 2),
        top=top,
        bottom=bottom,
        slots=slots,
        y_ticks=[Tick(y_of(value), label) for value, label in zip(ticks, tick_labels, strict=True)],
        x_labels=x_labels,
        empty_message=None if peak else f"No requests in the last {summary.range.label}",
        error_path=error_path,
        error_ticks=[
            Tick(round(bottom - value / error_ticks[-1] * plot_height, 2), label)
            for value, label in zip(error_ticks, error_labels, strict=True)
        ]
        if error_ticks
        else [],
        focused_index=len(slots) - 1,
    )


def render_svg(chart: Chart, summary: UsageSummary) -> Markup:
    """The chart as SVG markup. Written out here rather than in a template: a 90-day chart is thousands of
    attributes, and escaping each one through the template engine costs more than the rest of the page.
    Only the texts (labels, tooltips) need escaping; every other value is a number this module computed."""
    per = "hour" if summary.range.hourly else "day"
    name = (
        f"Requests per {per}, last {summary.range.label}: {summary.total:,} in all. "
        f"Arrow keys move between {per}s."
    )
    out = [
        f'<svg class="usage-chart {chart.layout}" viewBox="0 0 {chart.width} {chart.height}" role="group" '
        f'aria-label="{escape(name)}">',
        '<g aria-hidden="true">',
    ]
    for tick in chart.y_ticks:
        out.append(
            f'<line class="grid" x1="{chart.left}" x2="{chart.right}" y1="{tick.y}" y2="{tick.y}"/>'
            f'<text class="axis" x="{chart.left - 6}" y="{tick.y + 4}" text-anchor="end">{escape(tick.label)}</text>'
        )
    for tick in chart.error_ticks:
        out.append(
            f'<text class="axis error-axis" x="{chart.right + 6}" y="{tick.y + 4}" text-anchor="start">'
            f"{escape(tick.label)}</text>"
        )
    for label in chart.x_labels:
        out.append(
            f'<text class="axis" x="{label.x}" y="{chart.height - 8}" text-anchor="middle">{escape(label.label)}</text>'
        )
    if chart.empty_message:
        out.append(
            f'<text class="empty" x="{(chart.left + chart.right) / 2}" y="{(chart.top + chart.bottom) / 2}" '
            f'text-anchor="middle">{escape(chart.empty_message)}</text>'
        )
    out.append("</g>")
    for slot in chart.slots:
        tabindex = 0 if slot.index == chart.focused_index else -1
        out.append(
            f'<g class="slot" tabindex="{tabindex}" role="img" aria-label="{escape(slot.description)}">'
            f'<rect class="hit" x="{slot.x}" y="{chart.top}" width="{slot.width}" height="{chart.plot_height}"/>'
        )
        out.extend(
            f'<rect class="bar {segment.css_class}" x="{slot.bar_x}" y="{segment.y}" width="{slot.bar_width}" '
            f'height="{segment.height}"/>'
            for segment in slot.segments
        )
        out.append("</g>")
    if chart.error_path:
        out.append(f'<path class="error-rate" d="{chart.error_path}" aria-hidden="true"/>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704  (every text in it is escaped above)
