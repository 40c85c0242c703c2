"""Cursor pagination of API lists: `limit` and an opaque `cursor` (the last id seen)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from litestar.params import Parameter

from app.api.problems import ApiProblem, FieldError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]
Cursor = Annotated[str | None, Parameter(description="`next_cursor` of the previous page.")]


T = TypeVar("T")


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
        raise ApiProblem(
            422,
            "validation_error",
            "The request has invalid fields.",
            errors=[
                FieldError(
                    pointer="/cursor", detail="Not a cursor from this API; pass `next_cursor` as given."
                )
            ],
        ) from None


def page_from(rows: Sequence[T], request: PageRequest, id_of: Callable[[T], uuid.UUID]) -> Page[T]:
    """Rows were fetched in id order with limit + 1: the extra one only says there is more."""
    has_more = len(rows) > request.limit
    items = rows[: request.limit]
    next_cursor = encode_cursor(id_of(items[-1])) if has_more else None
    return Page(items=items, has_more=has_more, next_cursor=next_cursor)
