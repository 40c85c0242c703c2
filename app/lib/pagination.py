"""Cursor pagination: a page of rows in id order (or in order of change), and the opaque cursor that resumes it."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not made by `encode_cursor`."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    after: uuid.UUID | None

    @classmethod
    def of(cls, limit: int, cursor: str | None) -> PageRequest:
        return cls(limit=limit, after=decode_cursor(cursor) if cursor else None)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_more: bool
    next_cursor: str | None


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor(cursor) from None


def page_from(rows: Sequence[T], request: PageRequest, id_of: Callable[[T], uuid.UUID]) -> Page[T]:
    """Rows were fetched in id order with limit + 1: the extra one only says there is more."""
    has_more = len(rows) > request.limit
    items = rows[: request.limit]
    next_cursor = encode_cursor(id_of(items[-1])) if has_more else None
    return Page(items=items, has_more=has_more, next_cursor=next_cursor)


def encode_change_cursor(at: datetime, last_id: uuid.UUID) -> str:
    """A cursor after (`at`, `last_id`): for lists in order of change, where ids alone are not the order."""
    micros = _micros(at)
    return (
        base64.urlsafe_b64encode(micros.to_bytes(8, "big", signed=True) + last_id.bytes).decode().rstrip("=")
    )


def decode_change_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 24:
            raise ValueError(cursor)
        micros = int.from_bytes(raw[:8], "big", signed=True)
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[8:])
    except (binascii.Error, ValueError, OverflowError):
        raise InvalidCursor(cursor) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    # Exact integer arithmetic: a float timestamp would round some microseconds and skip or repeat rows.
    return (at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def page_in(items: Sequence[T], request: PageRequest, id_of: Callable[[T], uuid.UUID]) -> Page[T]:
    """The page of `items` (all of them, in id order, already in memory) that `request` asks for."""
    start = 0
    if request.after is not None:
        after = request.after
        start = next((n for n, item in enumerate(items) if id_of(item) > after), len(items))
    return page_from(items[start : start + request.limit + 1], request, id_of)
