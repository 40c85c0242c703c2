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
from functools import cache, lru_cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_RANGE_DAYS: Final = 31
# The dates availability may be asked for, around today: beyond them no service has slots, and refusing them
# first keeps every later date computation (margins, zone conversions) far from 0001-01-01 and 9999-12-31.
MAX_DAYS_BACK: Final = 366
MAX_DAYS_AHEAD: Final = 731
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


def is_slot_start(schedule: Schedule, rules: SlotRules, start: datetime) -> bool:
    """Whether `start` (aware) is in `slot_starts` of its local date, without listing that day's slots.

    An instant is in `local_instants` of exactly one wall time, its own: so it is a slot start when its wall
    time is on an opening range's grid, before closing, and its slot ends by closing on the wall clock.
    """
    zone = schedule.time_zone
    wall = start.astimezone(zone).replace(tzinfo=None)
    day = wall.date()
    interval = timedelta(minutes=rules.slot_interval_minutes)
    end_on_wall = (start.astimezone(UTC) + rules.duration).astimezone(zone).replace(tzinfo=None)
    for opening in schedule.ranges_on(day):
        opens = datetime.combine(day, opening.opens_at)
        closing = datetime.combine(day, opening.closes_at)
        if opens <= wall < closing and (wall - opens) % interval == timedelta() and end_on_wall <= closing:
            return True
    return False


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


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_DAY_S: Final = 86_400


def _seconds(moment: time) -> int | None:
    """Seconds after midnight; None for a time with microseconds (left to the exact path)."""
    if moment.microsecond:
        return None
    return moment.hour * 3600 + moment.minute * 60 + moment.second


@lru_cache(maxsize=4096)
def _wall_grid(
    ranges: tuple[tuple[time, time], ...], interval_minutes: int, duration_minutes: int
) -> tuple[int, ...] | None:
    """Slot starts of a day whose clock does not change, in seconds after local midnight, in order: the
    arithmetic of `slot_starts`, the same for every such day with these opening ranges. None when a time
    has microseconds (then `slot_starts` answers)."""
    interval, duration = interval_minutes * 60, duration_minutes * 60
    starts: set[int] = set()
    for opens_at, closes_at in ranges:
        opens, closes = _seconds(opens_at), _seconds(closes_at)
        if opens is None or closes is None:
            return None
        wall = opens
        while wall < closes:
            if wall + duration <= closes:
                starts.add(wall)
            wall += interval
    return tuple(sorted(starts))


@lru_cache(maxsize=8192)
def _day_slots(
    base: int, grid: tuple[int, ...], duration_s: int, capacity: int
) -> tuple[tuple[int, Slot], ...]:
    """A day's grid from the day's first instant `base`, as (start, the slot with every place free): made
    once per day and grid, so a request compares numbers, and makes a Slot only for a part-booked one."""
    return tuple(
        (
            base + wall,
            Slot(
                datetime.fromtimestamp(base + wall, UTC),
                datetime.fromtimestamp(base + wall + duration_s, UTC),
                capacity,
            ),
        )
        for wall in grid
    )


def _midnight_offset_s(day: date, zone: ZoneInfo) -> int | None:
    """The zone's UTC offset all through local `day` in seconds, or None if its clock changes that day."""
    first = datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()
    last = datetime(day.year, day.month, day.day, 23, 59, 59, 999_999, tzinfo=zone).utcoffset()
    if first is None or first != last:
        return None
    return int(first.total_seconds())


def _epoch_s(moment: datetime) -> float:
    return moment.timestamp()


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
    """Every date from `first_day` to `last_day` in `zone`, each with its free slots in order.

    The grid starts whose date in `zone` is within the range, that respect notice and horizon and have a
    place left. On a day without a clock change the grid is memoized arithmetic on seconds (`_wall_grid`)
    and a candidate is only made into datetimes once it is returned; a day with a clock change takes the
    exact path of `slot_starts`.
    """
    days = {day: Day(date=day) for day in _dates(first_day, last_day)}
    earliest_at, latest_at = rules.bookable_between(now)
    earliest, latest = _epoch_s(earliest_at), _epoch_s(latest_at)
    # The requested dates as instants: a start is in range when low <= start < high.
    low = _epoch_s(datetime.combine(first_day, time(), zone))
    high = _epoch_s(datetime.combine(last_day + timedelta(days=1), time(), zone))
    before, after = rules.buffer_before_minutes * 60, rules.buffer_after_minutes * 60
    duration_s = rules.duration_minutes * 60
    duration = rules.duration
    # What each booking blocks, buffers included, as instants.
    blocked = [
        (_epoch_s(booking.start_at) - before, _epoch_s(booking.end_at) + after, booking.party_size)
        for booking in bookings
    ]
    capacity = rules.capacity
    home = schedule.time_zone
    same_zone = zone.key == home.key
    by_weekday = {
        weekday: tuple(
            (item.opens_at, item.closes_at)
            for item in sorted(
                (item for item in schedule.opening_hours if item.weekday == weekday),
                key=lambda item: item.opens_at,
            )
        )
        for weekday in range(7)
    }

    def remaining_at(start: float) -> int:
        first, last = start - before, start + duration_s + after
        taken = 0
        for booked_first, booked_last, party_size in blocked:
            if booked_first < last and first < booked_last:
                taken += party_size
        return capacity - taken

    def add(start: datetime, local_day: date | None, remaining: int) -> None:
        day = local_day if local_day is not None else start.astimezone(zone).date()
        days[day].slots.append(Slot(start=start, end=start + duration, remaining_capacity=remaining))

    for local_day in _dates(first_day - _DAY_MARGIN, last_day + _DAY_MARGIN):
        ranges = by_weekday[local_day.weekday()]
        if not ranges or schedule.is_closed(local_day):
            continue
        offset = _midnight_offset_s(local_day, home)
        grid = _wall_grid(ranges, rules.slot_interval_minutes, rules.duration_minutes)
        bucket = local_day if same_zone else None
        if offset is None or grid is None:
            for start_at in slot_starts(schedule, rules, local_day):
                start = _epoch_s(start_at)
                if earliest <= start <= latest and low <= start < high:
                    remaining = remaining_at(start)
                    if remaining > 0:
                        add(start_at, bucket, remaining)
            continue
        base = (local_day.toordinal() - _EPOCH_ORDINAL) * _DAY_S - offset
        if base + _DAY_S <= low or base >= high or base + _DAY_S < earliest or base > latest:
            continue  # no start of this day can be in range
        for start, free in _day_slots(base, grid, duration_s, capacity):
            if earliest <= start <= latest and low <= start < high:
                remaining = remaining_at(start) if blocked else capacity
                if remaining > 0:
                    day = bucket if bucket is not None else free.start.astimezone(zone).date()
                    slot = free if remaining == capacity else Slot(free.start, free.end, remaining)
                    days[day].slots.append(slot)
    return list(days.values())


def check_timing(rules: SlotRules, start: datetime, *, now: datetime) -> Refusal | None:
    """Whether `start` lies between the minimum notice and the horizon. Compares instants only, so any
    start, 0001-01-01 and 9999-12-31 included, is answered before anything is computed from it."""
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
    return None


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
    if refusal := check_timing(rules, start, now=now):
        return refusal
    day = start.astimezone(schedule.time_zone).date()
    if schedule.is_closed(day):
        return Refusal("invalid_slot", f"The business is closed on {day.isoformat()}.")
    if not is_slot_start(schedule, rules, start):
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


def check_date_window(first_day: date, last_day: date, today: date) -> tuple[str, str] | None:
    """The field and why, if the range reaches further from `today` than availability is ever asked for.

    Dates are only compared here, never computed from (`today` is the server's UTC date)."""
    if first_day < today - timedelta(days=MAX_DAYS_BACK):
        return "start_date", f"start_date may be at most {MAX_DAYS_BACK} days in the past."
    if last_day > today + timedelta(days=MAX_DAYS_AHEAD):
        return "end_date", f"end_date may be at most {MAX_DAYS_AHEAD} days ahead."
    return None
