"""The slot algorithm: opening hours in a named time zone → bookable instants, and whether one is bookable.

Pure functions only (no I/O), shared by GET /availability and the re-check inside POST /reservations.
Every instant here is an aware UTC datetime: Python compares two datetimes that share a tzinfo by wall clock,
fold ignored, which would merge the two 01:30s of an autumn night. Local zones are only used to build
wall-clock times and to group and render results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_RANGE_DAYS: Final = 31
# Any two zones' dates differ by at most one day (offsets span UTC-12 to UTC+14): two days of margin
# when mapping the requested zone's dates onto the organization's.
_DAY_MARGIN: Final = timedelta(days=2)

RefusalCode = Literal[
    "slot_in_past",
    "too_late_to_book",
    "too_early_to_book",
    "invalid_slot",
    "slot_unavailable",
    "insufficient_capacity",
]


@dataclass(frozen=True, slots=True)
class OpeningRange:
    """Open from `opens_at` to `closes_at` (local wall clock) every `weekday` (0 = Monday)."""

    weekday: int
    opens_at: time
    closes_at: time


@dataclass(frozen=True, slots=True)
class Closure:
    """Closed from `first` to `last`, both local dates, inclusive."""

    first: date
    last: date

    def covers(self, day: date) -> bool:
        return self.first <= day <= self.last


@dataclass(frozen=True, slots=True)
class Schedule:
    """An organization's opening hours and closures, in its own time zone."""

    time_zone: ZoneInfo
    opening_hours: tuple[OpeningRange, ...]
    closures: tuple[Closure, ...] = ()

    def is_closed(self, day: date) -> bool:
        return any(closure.covers(day) for closure in self.closures)

    def ranges_on(self, day: date) -> list[OpeningRange]:
        if self.is_closed(day):
            return []
        weekday = day.weekday()
        return sorted(
            (item for item in self.opening_hours if item.weekday == weekday), key=lambda item: item.opens_at
        )


@dataclass(frozen=True, slots=True)
class SlotRules:
    """A service's booking rules, in minutes and days as the catalog stores them."""

    duration_minutes: int
    slot_interval_minutes: int
    capacity: int
    min_notice_minutes: int = 0
    booking_horizon_days: int = 60
    buffer_before_minutes: int = 0
    buffer_after_minutes: int = 0

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def occupied(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """What a booking from `start` to `end` blocks: the buffers before and after are the service's too."""
        return (
            start - timedelta(minutes=self.buffer_before_minutes),
            end + timedelta(minutes=self.buffer_after_minutes),
        )

    def bookable_between(self, now: datetime) -> tuple[datetime, datetime]:
        """The earliest (minimum notice) and latest (horizon) start a booking made at `now` may have."""
        return now + timedelta(minutes=self.min_notice_minutes), now + timedelta(
            days=self.booking_horizon_days
        )


@dataclass(frozen=True, slots=True)
class Occupancy:
    """An existing reservation of the same service."""

    start_at: datetime
    end_at: datetime
    party_size: int


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    remaining_capacity: int


@dataclass(frozen=True, slots=True)
class Day:
    date: date
    slots: list[Slot] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a start cannot be booked; `code` is the API's stable error code."""

    code: RefusalCode
    detail: str
    remaining_capacity: int | None = None


# --- Time zones -------------------------------------------------------------------------------------


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone_named(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, or None: file paths, typos and unknown names are all just unknown."""
    if name not in _known_zones():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which clocks in `zone` show the naive `wall` time.

    None in a spring-forward gap, two in a repeated autumn hour (earlier first), otherwise one.
    """
    instants = []
    for fold in (0, 1):
        candidate = wall.replace(tzinfo=zone, fold=fold)
        instant = candidate.astimezone(UTC)
        # A wall time in a gap does not survive the round trip back to the zone's clock.
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in instants:
            instants.append(instant)
    return sorted(instants)


# --- Slots ------------------------------------------------------------------------------------------


def slot_starts(schedule: Schedule, rules: SlotRules, day: date) -> list[datetime]:
    """Every grid start on the local date `day`, as UTC instants, in order.

    Each opening range is stepped by the slot interval from its opening time; a slot fits when it ends, by
    the wall clock, no later than closing time. Notice, horizon and capacity are not considered here.
    """
    zone = schedule.time_zone
    interval = timedelta(minutes=rules.slot_interval_minutes)
    starts: set[datetime] = set()
    for opening in schedule.ranges_on(day):
        wall = datetime.combine(day, opening.opens_at)
        closing = datetime.combine(day, opening.closes_at)
        while wall < closing:
            for start in local_instants(wall, zone):
                # Elapsed time, read back on the wall clock: a slot spanning a DST change ends an hour
                # earlier or later on the clock than its start plus its duration.
                end_on_wall = (start + rules.duration).astimezone(zone).replace(tzinfo=None)
                if end_on_wall <= closing:
                    starts.add(start)
            wall += interval
    return sorted(starts)


def remaining_capacity(rules: SlotRules, start: datetime, bookings: Iterable[Occupancy]) -> int:
    """Seats left at `start`: capacity less every booking whose occupied time overlaps this slot's.

    Overlapping bookings are summed even when they do not overlap one another: never more than is free.
    """
    first, last = rules.occupied(start, start + rules.duration)
    taken = 0
    for booking in bookings:
        booked_first, booked_last = rules.occupied(booking.start_at, booking.end_at)
        if booked_first < last and first < booked_last:
            taken += booking.party_size
    return rules.capacity - taken


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def candidate_starts(
    schedule: Schedule, rules: SlotRules, *, first_day: date, last_day: date, zone: ZoneInfo, now: datetime
) -> list[datetime]:
    """Grid starts whose date in `zone` is within the range and that respect notice and horizon."""
    earliest, latest = rules.bookable_between(now)
    starts = []
    for local_day in _dates(first_day - _DAY_MARGIN, last_day + _DAY_MARGIN):
        for start in slot_starts(schedule, rules, local_day):
            if earliest <= start <= latest and first_day <= start.astimezone(zone).date() <= last_day:
                starts.append(start)
    return sorted(starts)


def free_days(
    schedule: Schedule,
    rules: SlotRules,
    bookings: Sequence[Occupancy],
    *,
    first_day: date,
    last_day: date,
    zone: ZoneInfo,
    now: datetime,
) -> list[Day]:
    """Every date from `first_day` to `last_day` in `zone`, each with its free slots in order."""
    days = {day: Day(date=day) for day in _dates(first_day, last_day)}
    for start in candidate_starts(
        schedule, rules, first_day=first_day, last_day=last_day, zone=zone, now=now
    ):
        remaining = remaining_capacity(rules, start, bookings)
        if remaining > 0:
            days[start.astimezone(zone).date()].slots.append(
                Slot(start=start, end=start + rules.duration, remaining_capacity=remaining)
            )
    return list(days.values())


def check_booking(
    schedule: Schedule,
    rules: SlotRules,
    bookings: Sequence[Occupancy],
    *,
    start: datetime,
    party_size: int,
    now: datetime,
) -> Slot | Refusal:
    """The slot starting at `start` (its capacity as it will be once booked) if `party_size` can book it at
    `now`, otherwise why not."""
    start = start.astimezone(UTC)
    earliest, latest = rules.bookable_between(now)
    if start < now:
        return Refusal("slot_in_past", "This start time has already passed.")
    if start < earliest:
        return Refusal(
            "too_late_to_book",
            f"This service must be booked at least {rules.min_notice_minutes} minutes in advance.",
        )
    if start > latest:
        return Refusal(
            "too_early_to_book",
            f"This service can be booked at most {rules.booking_horizon_days} days in advance.",
        )
    day = start.astimezone(schedule.time_zone).date()
    if schedule.is_closed(day):
        return Refusal("invalid_slot", f"The business is closed on {day.isoformat()}.")
    if start not in slot_starts(schedule, rules, day):
        return Refusal(
            "invalid_slot",
            "This is not a slot start: slots start every "
            f"{rules.slot_interval_minutes} minutes from opening time and end by closing time. "
            "GET /api/v1/availability lists them.",
        )
    remaining = remaining_capacity(rules, start, bookings)
    if remaining <= 0:
        return Refusal("slot_unavailable", "This slot is no longer available.", remaining_capacity=0)
    if remaining < party_size:
        return Refusal(
            "insufficient_capacity",
            f"Only {remaining} of the {party_size} places asked for are left in this slot.",
            remaining_capacity=remaining,
        )
    return Slot(start=start, end=start + rules.duration, remaining_capacity=remaining - party_size)


def check_date_range(first_day: date, last_day: date) -> str | None:
    """Why an availability range is not acceptable, or None."""
    if last_day < first_day:
        return "end_date must be on or after start_date."
    if (last_day - first_day).days + 1 > MAX_RANGE_DAYS:
        return f"The range may span at most {MAX_RANGE_DAYS} days, start_date and end_date included."
    return None
