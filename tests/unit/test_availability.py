"""The slot algorithm: opening hours, breaks, closures, notice, horizon, capacity, buffers and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from app.domain.booking.availability import (
    MAX_DAYS_AHEAD,
    MAX_DAYS_BACK,
    Closure,
    Occupancy,
    OpeningRange,
    Refusal,
    Schedule,
    Slot,
    SlotRules,
    check_booking,
    check_date_range,
    check_date_window,
    check_timing,
    free_days,
    is_slot_start,
    local_instants,
    remaining_capacity,
    slot_starts,
    time_zone_named,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC_ZONE = ZoneInfo("UTC")

MONDAY = date(2026, 3, 2)  # GMT, no DST change nearby
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)  # "now" for tests about the grid alone
# 2026 DST changes: London 29 Mar (01:00 GMT → 02:00 BST) and 25 Oct (02:00 BST → 01:00 GMT);
# New York 8 Mar (02:00 EST → 03:00 EDT) and 1 Nov (02:00 EDT → 01:00 EST). All Sundays.
LONDON_SPRING, LONDON_AUTUMN = date(2026, 3, 29), date(2026, 10, 25)
NEW_YORK_SPRING, NEW_YORK_AUTUMN = date(2026, 3, 8), date(2026, 11, 1)


def hours(*ranges: tuple[str, str], weekdays: tuple[int, ...] = tuple(range(7))) -> tuple[OpeningRange, ...]:
    return tuple(
        OpeningRange(weekday, time.fromisoformat(opens), time.fromisoformat(closes))
        for weekday in weekdays
        for opens, closes in ranges
    )


def rules(
    duration: int = 60, interval: int = 30, capacity: int = 1, horizon_days: int = 3650, **extra: int
) -> SlotRules:
    return SlotRules(
        duration_minutes=duration,
        slot_interval_minutes=interval,
        capacity=capacity,
        booking_horizon_days=horizon_days,
        **extra,
    )


def labels(starts: list[datetime], zone: ZoneInfo) -> list[str]:
    """Each start as the zone's clock and offset show it, e.g. '01:30+01:00'."""
    return [
        start.astimezone(zone).isoformat()[11:16] + start.astimezone(zone).isoformat()[19:]
        for start in starts
    ]


def at(day: date, clock: str, zone: ZoneInfo = LONDON, fold: int = 0) -> datetime:
    return datetime.combine(day, time.fromisoformat(clock), zone).replace(fold=fold).astimezone(UTC)


# --- The grid ---------------------------------------------------------------------------------------


def test_ranges_with_a_lunch_break_are_stepped_by_the_interval() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "13:00"), ("14:00", "18:00")))
    starts = slot_starts(schedule, rules(duration=60, interval=30), MONDAY)
    assert labels(starts, LONDON) == [
        f"{clock}+00:00"
        for clock in (
            *("09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "12:00"),
            *("14:00", "14:30", "15:00", "15:30", "16:00", "16:30", "17:00"),
        )
    ]


def test_a_slot_must_end_by_closing_time() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "11:00")))
    assert labels(slot_starts(schedule, rules(duration=60, interval=45), MONDAY), LONDON) == [
        "09:00+00:00",
        "09:45+00:00",
    ]
    assert slot_starts(schedule, rules(duration=150, interval=30), MONDAY) == []


def test_only_the_weekdays_with_opening_hours_have_slots() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "10:00"), weekdays=(0, 5)))  # Monday and Saturday
    counts = [len(slot_starts(schedule, rules(), MONDAY + timedelta(days=n))) for n in range(7)]
    assert counts == [1, 0, 0, 0, 0, 1, 0]


def test_closures_cover_whole_dates_inclusive() -> None:
    schedule = Schedule(
        LONDON, hours(("09:00", "17:00")), closures=(Closure(MONDAY, MONDAY + timedelta(days=1)),)
    )
    days = free_days(
        schedule,
        rules(),
        [],
        first_day=MONDAY - timedelta(days=1),
        last_day=MONDAY + timedelta(days=2),
        zone=LONDON,
        now=LONG_AGO,
    )
    assert [(day.date, len(day.slots)) for day in days] == [
        (MONDAY - timedelta(days=1), 15),
        (MONDAY, 0),
        (MONDAY + timedelta(days=1), 0),
        (MONDAY + timedelta(days=2), 15),
    ]


# --- DST --------------------------------------------------------------------------------------------


def test_local_instants_of_normal_gap_and_repeated_times() -> None:
    assert local_instants(datetime(2026, 3, 2, 9), LONDON) == [datetime(2026, 3, 2, 9, tzinfo=UTC)]
    assert local_instants(datetime(2026, 3, 29, 1, 30), LONDON) == []
    assert local_instants(datetime(2026, 10, 25, 1, 30), LONDON) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]
    assert local_instants(datetime(2026, 3, 8, 2, 30), NEW_YORK) == []
    assert len(local_instants(datetime(2026, 11, 1, 1, 0), NEW_YORK)) == 2


def test_london_spring_forward_gap_has_no_slot() -> None:
    schedule = Schedule(LONDON, hours(("00:00", "04:00")))
    starts = slot_starts(schedule, rules(duration=30, interval=30), LONDON_SPRING)
    assert labels(starts, LONDON) == [
        "00:00+00:00",
        "00:30+00:00",
        "02:00+01:00",
        "02:30+01:00",
        "03:00+01:00",
        "03:30+01:00",
    ]
    # A slot across the change lasts its 60 real minutes: 00:30 GMT ends at 02:30 BST on the clock.
    long = slot_starts(schedule, rules(duration=60, interval=30), LONDON_SPRING)
    assert labels(long, LONDON)[:3] == ["00:00+00:00", "00:30+00:00", "02:00+01:00"]
    assert labels(long, LONDON)[-1] == "03:00+01:00"


def test_london_autumn_repeated_hour_gives_two_distinct_instants() -> None:
    schedule = Schedule(LONDON, hours(("00:00", "03:00")))
    starts = slot_starts(schedule, rules(duration=30, interval=30), LONDON_AUTUMN)
    assert labels(starts, LONDON) == [
        "00:00+01:00",
        "00:30+01:00",
        "01:00+01:00",
        "01:30+01:00",
        "01:00+00:00",
        "01:30+00:00",
        "02:00+00:00",
        "02:30+00:00",
    ]
    assert len(set(starts)) == len(starts) == 8
    assert all(later - earlier == timedelta(minutes=30) for earlier, later in pairwise(starts))


def test_a_slot_across_the_autumn_change_is_judged_by_the_clock_at_its_end() -> None:
    schedule = Schedule(LONDON, hours(("00:00", "02:00")))
    starts = slot_starts(schedule, rules(duration=60, interval=30), LONDON_AUTUMN)
    # 01:30 BST + 60 min is 01:30 GMT, before closing; 01:30 GMT + 60 min is 02:30, after it.
    assert labels(starts, LONDON) == [
        "00:00+01:00",
        "00:30+01:00",
        "01:00+01:00",
        "01:30+01:00",
        "01:00+00:00",
    ]


def test_new_york_spring_forward_gap_has_no_slot() -> None:
    schedule = Schedule(NEW_YORK, hours(("00:00", "05:00")))
    starts = slot_starts(schedule, rules(duration=60, interval=60), NEW_YORK_SPRING)
    assert labels(starts, NEW_YORK) == ["00:00-05:00", "01:00-05:00", "03:00-04:00", "04:00-04:00"]


def test_new_york_autumn_repeated_hour_gives_two_distinct_instants() -> None:
    schedule = Schedule(NEW_YORK, hours(("00:00", "05:00")))
    starts = slot_starts(schedule, rules(duration=60, interval=60), NEW_YORK_AUTUMN)
    assert labels(starts, NEW_YORK) == [
        "00:00-04:00",
        "01:00-04:00",
        "01:00-05:00",
        "02:00-05:00",
        "03:00-05:00",
        "04:00-05:00",
    ]


def test_ordinary_business_hours_on_dst_days_keep_their_wall_clock_times() -> None:
    schedule = Schedule(NEW_YORK, hours(("09:00", "12:00")))
    for day in (NEW_YORK_SPRING, NEW_YORK_AUTUMN):
        starts = slot_starts(schedule, rules(duration=60, interval=60), day)
        assert [start.astimezone(NEW_YORK).strftime("%H:%M") for start in starts] == [
            "09:00",
            "10:00",
            "11:00",
        ]
    spring = slot_starts(schedule, rules(duration=60, interval=60), NEW_YORK_SPRING)
    autumn = slot_starts(schedule, rules(duration=60, interval=60), NEW_YORK_AUTUMN)
    assert spring[0] == datetime(2026, 3, 8, 13, tzinfo=UTC) and autumn[0] == datetime(
        2026, 11, 1, 14, tzinfo=UTC
    )


def test_both_repeated_instants_can_be_booked() -> None:
    schedule = Schedule(LONDON, hours(("00:00", "03:00")))
    first, second = at(LONDON_AUTUMN, "01:30", fold=0), at(LONDON_AUTUMN, "01:30", fold=1)
    for start in (first, second):
        assert isinstance(
            check_booking(schedule, rules(duration=30), [], start=start, party_size=1, now=LONG_AGO), Slot
        )
    gap = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 02:30 BST: on the grid; 01:30 GMT would be in the gap
    assert isinstance(
        check_booking(schedule, rules(duration=30), [], start=gap, party_size=1, now=LONG_AGO), Slot
    )


# --- Grouping in the requested time zone ------------------------------------------------------------


def test_days_are_grouped_in_the_requested_time_zone() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "18:00"), weekdays=(0,)))  # Mondays only
    # London's Monday 09:00-17:00 GMT is 18:00 Monday to 02:00 Tuesday in Tokyo (UTC+9).
    days = free_days(
        schedule,
        rules(duration=60, interval=60),
        [],
        first_day=MONDAY,
        last_day=MONDAY + timedelta(days=1),
        zone=TOKYO,
        now=LONG_AGO,
    )
    monday, tuesday = days
    assert [slot.start.astimezone(TOKYO).strftime("%H:%M") for slot in monday.slots] == [
        "18:00",
        "19:00",
        "20:00",
        "21:00",
        "22:00",
        "23:00",
    ]
    assert [slot.start.astimezone(TOKYO).strftime("%H:%M") for slot in tuesday.slots] == [
        "00:00",
        "01:00",
        "02:00",
    ]
    # Tokyo's Sunday, asked for alone, holds nothing; its Tuesday holds London Monday's evening.
    only_sunday = free_days(
        schedule,
        rules(),
        [],
        first_day=MONDAY - timedelta(days=1),
        last_day=MONDAY - timedelta(days=1),
        zone=TOKYO,
        now=LONG_AGO,
    )
    assert [len(day.slots) for day in only_sunday] == [0]


def test_a_zone_behind_utc_sees_the_morning_on_the_same_date() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "11:00"), weekdays=(0,)))
    days = free_days(
        schedule,
        rules(duration=60, interval=60),
        [],
        first_day=MONDAY,
        last_day=MONDAY,
        zone=NEW_YORK,
        now=LONG_AGO,
    )
    assert [slot.start.astimezone(NEW_YORK).isoformat() for slot in days[0].slots] == [
        "2026-03-02T04:00:00-05:00",
        "2026-03-02T05:00:00-05:00",
    ]


# --- Notice and horizon -----------------------------------------------------------------------------


def test_the_past_and_the_minimum_notice_are_left_out() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "12:00")))
    now = at(MONDAY, "09:10")
    no_notice = free_days(schedule, rules(), [], first_day=MONDAY, last_day=MONDAY, zone=LONDON, now=now)
    assert labels([slot.start for slot in no_notice[0].slots], LONDON)[0] == "09:30+00:00"
    notice = free_days(
        schedule, rules(min_notice_minutes=60), [], first_day=MONDAY, last_day=MONDAY, zone=LONDON, now=now
    )
    assert labels([slot.start for slot in notice[0].slots], LONDON) == ["10:30+00:00", "11:00+00:00"]


def test_nothing_beyond_the_horizon() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "12:00")))
    now = at(MONDAY, "10:00")
    days = free_days(
        schedule,
        rules(horizon_days=1),
        [],
        first_day=MONDAY,
        last_day=MONDAY + timedelta(days=2),
        zone=LONDON,
        now=now,
    )
    assert [len(day.slots) for day in days] == [
        3,  # 10:00 to 11:00 today
        3,  # 09:00 to 10:00 tomorrow: exactly 24 hours ahead is still inside
        0,
    ]


# --- Capacity and buffers ---------------------------------------------------------------------------


def test_remaining_capacity_counts_party_sizes_of_overlapping_bookings() -> None:
    ten = at(MONDAY, "10:00")
    class_rules = rules(duration=60, interval=30, capacity=5)
    bookings = [
        Occupancy(ten, ten + timedelta(minutes=60), 2),
        Occupancy(ten, ten + timedelta(minutes=60), 1),
        Occupancy(ten + timedelta(hours=3), ten + timedelta(hours=4), 4),  # not overlapping
    ]
    assert remaining_capacity(class_rules, ten, bookings) == 2
    assert remaining_capacity(class_rules, ten + timedelta(minutes=30), bookings) == 2  # partial overlap
    assert remaining_capacity(class_rules, ten + timedelta(minutes=60), bookings) == 5  # touching is free


def test_full_slots_and_slots_overlapping_an_appointment_are_left_out() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "13:00")))
    ten = at(MONDAY, "10:00")
    bookings = [Occupancy(ten, ten + timedelta(minutes=60), 1)]
    days = free_days(
        schedule, rules(), bookings, first_day=MONDAY, last_day=MONDAY, zone=LONDON, now=LONG_AGO
    )
    assert labels([slot.start for slot in days[0].slots], LONDON) == [
        "09:00+00:00",
        "11:00+00:00",
        "11:30+00:00",
        "12:00+00:00",
    ]
    assert {slot.remaining_capacity for slot in days[0].slots} == {1}


def test_class_slots_show_the_places_left() -> None:
    schedule = Schedule(LONDON, hours(("10:00", "11:00")))
    ten = at(MONDAY, "10:00")
    days = free_days(
        schedule,
        rules(capacity=12),
        [Occupancy(ten, ten + timedelta(minutes=60), 5)],
        first_day=MONDAY,
        last_day=MONDAY,
        zone=LONDON,
        now=LONG_AGO,
    )
    assert [(slot.start, slot.end, slot.remaining_capacity) for slot in days[0].slots] == [
        (ten, ten + timedelta(minutes=60), 7)
    ]


@pytest.mark.parametrize(
    ("buffers", "free"),
    [
        ({}, ["09:00", "11:00", "11:30"]),
        # Each slot carries the buffer too: 09:00's clean-up runs into 10:00, 11:00 starts inside 10:00's.
        ({"buffer_after_minutes": 15}, ["11:30"]),
        ({"buffer_before_minutes": 15}, ["11:30"]),
    ],
)
def test_buffers_widen_what_a_booking_blocks(buffers: dict[str, int], free: list[str]) -> None:
    schedule = Schedule(LONDON, hours(("09:00", "12:30")))
    ten = at(MONDAY, "10:00")
    days = free_days(
        schedule,
        rules(**buffers),
        [Occupancy(ten, ten + timedelta(minutes=60), 1)],
        first_day=MONDAY,
        last_day=MONDAY,
        zone=LONDON,
        now=LONG_AGO,
    )
    assert [slot.start.astimezone(LONDON).strftime("%H:%M") for slot in days[0].slots] == free


# --- Booking checks ---------------------------------------------------------------------------------


def refusal(result: Slot | Refusal) -> str:
    assert isinstance(result, Refusal), result
    return result.code


def test_booking_refusals_in_order() -> None:
    schedule = Schedule(
        LONDON,
        hours(("09:00", "17:00")),
        closures=(Closure(MONDAY + timedelta(days=7), MONDAY + timedelta(days=7)),),
    )
    now = at(MONDAY, "12:00")
    service = rules(min_notice_minutes=120, horizon_days=30)

    def check(
        start: datetime, party_size: int = 1, bookings: list[Occupancy] | None = None
    ) -> Slot | Refusal:
        return check_booking(schedule, service, bookings or [], start=start, party_size=party_size, now=now)

    assert refusal(check(at(MONDAY, "11:00"))) == "slot_in_past"
    assert refusal(check(at(MONDAY, "13:30"))) == "too_late_to_book"
    assert refusal(check(at(MONDAY + timedelta(days=31), "10:00"))) == "too_early_to_book"
    assert refusal(check(at(MONDAY + timedelta(days=1), "10:10"))) == "invalid_slot"  # off the grid
    assert refusal(check(at(MONDAY + timedelta(days=1), "10:00") + timedelta(seconds=1))) == "invalid_slot"
    assert (
        refusal(check(at(MONDAY + timedelta(days=1), "16:30"))) == "invalid_slot"
    )  # would end after closing
    assert refusal(check(at(MONDAY + timedelta(days=1), "20:00"))) == "invalid_slot"  # outside hours
    closed = check(at(MONDAY + timedelta(days=7), "10:00"))
    assert refusal(closed) == "invalid_slot" and "closed" in closed.detail  # type: ignore[union-attr]

    tomorrow = at(MONDAY + timedelta(days=1), "10:00")
    ok = check(tomorrow)
    assert ok == Slot(start=tomorrow, end=tomorrow + timedelta(hours=1), remaining_capacity=0)
    # Any offset names the same instant.
    assert check(tomorrow.astimezone(NEW_YORK)) == ok


def test_capacity_refusals_say_what_is_left() -> None:
    schedule = Schedule(LONDON, hours(("09:00", "17:00")))
    ten = at(MONDAY, "10:00")
    class_rules = rules(capacity=3)
    two_taken = [Occupancy(ten, ten + timedelta(hours=1), 2)]
    result = check_booking(schedule, class_rules, two_taken, start=ten, party_size=2, now=LONG_AGO)
    assert isinstance(result, Refusal)
    assert (result.code, result.remaining_capacity) == ("insufficient_capacity", 1)
    assert isinstance(
        check_booking(schedule, class_rules, two_taken, start=ten, party_size=1, now=LONG_AGO), Slot
    )
    full = [*two_taken, Occupancy(ten, ten + timedelta(hours=1), 1)]
    result = check_booking(schedule, class_rules, full, start=ten, party_size=1, now=LONG_AGO)
    assert isinstance(result, Refusal)
    assert (result.code, result.remaining_capacity) == ("slot_unavailable", 0)


# --- Inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Europe/London", "America/New_York", "Asia/Kathmandu", "UTC"])
def test_known_time_zones(name: str) -> None:
    zone = time_zone_named(name)
    assert zone is not None and zone.key == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "europe/london", "../../etc/passwd", "/etc/localtime", "GMT+5"]
)
def test_unknown_time_zones(name: str) -> None:
    assert time_zone_named(name) is None


def test_date_ranges_span_at_most_31_days() -> None:
    assert check_date_range(MONDAY, MONDAY) is None
    assert check_date_range(MONDAY, MONDAY + timedelta(days=30)) is None
    assert "31 days" in (check_date_range(MONDAY, MONDAY + timedelta(days=31)) or "")
    assert "on or after" in (check_date_range(MONDAY, MONDAY - timedelta(days=1)) or "")


def test_utc_renders_as_plus_zero() -> None:
    from app.api.v1.schemas import rfc3339

    assert rfc3339(at(MONDAY, "09:00"), UTC_ZONE) == "2026-03-02T09:00:00+00:00"
    assert rfc3339(at(LONDON_AUTUMN, "01:30", fold=1), LONDON) == "2026-10-25T01:30:00+00:00"
    assert rfc3339(at(LONDON_AUTUMN, "01:30", fold=0), LONDON) == "2026-10-25T01:30:00+01:00"


def window_field(first: date, last: date, today: date) -> str | None:
    problem = check_date_window(first, last, today)
    return None if problem is None else problem[0]


def test_date_window_compares_dates_only_even_at_the_ends_of_the_calendar() -> None:
    today = date(2030, 3, 4)
    assert window_field(today - timedelta(days=MAX_DAYS_BACK), today, today) is None
    assert window_field(today, today + timedelta(days=MAX_DAYS_AHEAD), today) is None
    assert window_field(date.min, date.min + timedelta(days=1), today) == "start_date"
    assert window_field(date.max - timedelta(days=1), date.max, today) == "end_date"
    assert window_field(today, today + timedelta(days=MAX_DAYS_AHEAD + 1), today) == "end_date"


def test_timing_of_starts_at_the_ends_of_the_calendar_is_refused_without_overflow() -> None:
    rules = SlotRules(duration_minutes=60, slot_interval_minutes=30, capacity=1)
    now = datetime(2030, 3, 4, 12, tzinfo=UTC)
    first = check_timing(rules, datetime.min.replace(tzinfo=UTC), now=now)
    last = check_timing(rules, datetime.max.replace(tzinfo=UTC), now=now)
    assert first is not None and first.code == "slot_in_past"
    assert last is not None and last.code == "too_early_to_book"


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (LONDON, MONDAY),
        (LONDON, LONDON_SPRING),
        (LONDON, LONDON_AUTUMN),
        (NEW_YORK, NEW_YORK_SPRING),
        (NEW_YORK, NEW_YORK_AUTUMN),
        (TOKYO, MONDAY),
    ],
)
@pytest.mark.parametrize(("duration", "interval"), [(60, 30), (30, 30), (45, 20), (90, 15), (5, 5)])
def test_a_booking_checks_its_start_exactly_as_the_listed_slot_starts(
    zone: ZoneInfo, day: date, duration: int, interval: int
) -> None:
    """`is_slot_start` (a booking's check, without listing the day) agrees with `slot_starts` on every
    instant of the day and its neighbours, every 5 minutes, DST changes and a lunch break included."""
    schedule = Schedule(zone, hours(("00:30", "02:50"), ("09:10", "12:00"), ("13:00", "17:30")))
    slot_rules = rules(duration=duration, interval=interval)
    listed = {
        start
        for offset in (-1, 0, 1, 2)
        for start in slot_starts(schedule, slot_rules, day + timedelta(offset))
    }
    first = datetime.combine(day - timedelta(days=1), time(), zone).astimezone(UTC)
    instants = [first + timedelta(minutes=5 * n) for n in range(3 * 24 * 12)]
    assert listed, "the schedule has slots"
    for instant in instants + [instant + timedelta(seconds=30) for instant in sorted(listed)]:
        assert is_slot_start(schedule, slot_rules, instant) == (instant in listed), instant
