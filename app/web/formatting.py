"""How times read on the staff pages."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'} ago"


def time_ago(moment: datetime, now: datetime) -> str:
    """'just now', '5 minutes ago', '2 days ago', ...: the Last Used column's wording."""
    seconds = int((now - moment).total_seconds())
    if seconds < 60:
        return "just now"
    minutes = seconds // 60
    if minutes < 60:
        return _plural(minutes, "minute")
    hours = minutes // 60
    if hours < 24:
        return _plural(hours, "hour")
    days = hours // 24
    if days < 30:
        return _plural(days, "day")
    if days < 365:
        return _plural(days // 30, "month")
    return _plural(days // 365, "year")


def exact_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def local_time(moment: datetime, zone: tzinfo) -> str:
    """'Mon 2 Mar 2026, 09:30 GMT': a moment on the business's clock, with the zone's abbreviation."""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def local_date(moment: datetime, zone: tzinfo) -> str:
    """'2 Mar 2026': the day on the business's clock."""
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %Y}"


def time_tooltip(moment: datetime, zone: tzinfo) -> str:
    """A tooltip's exact time: the business's clock first, UTC only beside it."""
    return f"{local_time(moment, zone)} ({exact_time(moment)})"
