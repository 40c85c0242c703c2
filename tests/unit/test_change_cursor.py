"""The cursor of lists in order of change: (updated_at, id), exact to the microsecond, and refused if forged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.lib.pagination import InvalidCursor, decode_change_cursor, encode_change_cursor


@pytest.mark.parametrize(
    "at",
    [
        datetime(2030, 3, 4, 10, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 12, 2, 1, 2, 3, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
    ],
)
def test_round_trip_is_exact(at: datetime) -> None:
    last_id = uuid.uuid4()
    assert decode_change_cursor(encode_change_cursor(at, last_id)) == (at, last_id)


@pytest.mark.parametrize(
    "cursor", ["", "nonsense!", "AAAA", encode_change_cursor(datetime.now(UTC), uuid.uuid4())[:-2]]
)
def test_anything_else_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_change_cursor(cursor)
