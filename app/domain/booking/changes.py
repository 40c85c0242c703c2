"""Reservation changes in order: the `updated_at` every write stamps, and the list that syncs by it.

GET /reservations pages by (updated_at, id). For a reader never to skip a change, a change must never become
visible after a later-stamped one. So every reservation write of an organization stamps last in its
transaction, holding a per-organization lock until commit (a transaction-scoped advisory lock on PostgreSQL;
SQLite's write transactions, BEGIN IMMEDIATE, are one at a time already), and stamps strictly after the
organization's latest change, so a clock step back or two writes in one microsecond never reorder them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.booking.models import Reservation, Service
from app.lib.pagination import Page, encode_change_cursor

_TICK = timedelta(microseconds=1)


def _lock_key(organization_id: uuid.UUID) -> int:
    """A signed 64-bit advisory lock key for the organization's reservation changes."""
    return int.from_bytes(organization_id.bytes[-8:], "big", signed=True)


async def stamp(session: AsyncSession, organization_id: uuid.UUID, now: datetime) -> datetime:
    """The `updated_at` of a reservation change in this transaction; call it right before the write."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_lock_key(organization_id))))
    latest = await session.scalar(
        select(func.max(Reservation.updated_at)).where(Reservation.organization_id == organization_id)
    )
    return _after(latest, now)


def _after(latest: datetime | None, now: datetime) -> datetime:
    return now if latest is None or latest < now else latest + _TICK


# `stamp` in pieces, for the write path (app.lib.writes), whose booking takes this lock in the statement that
# locks its service and reads the latest change with its occupancy: fewer round trips while holding locks.
CHANGE_LOCK = func.pg_advisory_xact_lock(bindparam("change_lock", type_=BigInteger))
"""PostgreSQL: the organization's change lock, as a column of a statement that takes it (see `lock_values`)."""


def lock_values(organization_id: uuid.UUID) -> dict[str, int]:
    return {"change_lock": _lock_key(organization_id)}


def stamp_after(latest: datetime | None, now: datetime) -> datetime:
    """The `updated_at` of a change made after `latest` (the organization's latest, read under the lock)."""
    return _after(latest, now)


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    updated_since: datetime | None = None
    status: str | None = None
    service_id: uuid.UUID | None = None


async def list_changes(
    session: AsyncSession,
    organization_id: uuid.UUID,
    filters: ChangeFilter,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Page[tuple[Reservation, Service]]:
    """The organization's reservations in the order they last changed, oldest change first.

    `next_cursor` is given whenever the page has items, also on the last page: kept, it asks later for the
    changes since (`has_more` says whether to ask at once).
    """
    statement = (
        select(Reservation, Service)
        .join(Service, Service.id == Reservation.service_id)
        .where(Reservation.organization_id == organization_id)
        .order_by(Reservation.updated_at, Reservation.id)
        .limit(limit + 1)
    )
    if filters.updated_since is not None:
        statement = statement.where(Reservation.updated_at >= filters.updated_since)
    if filters.status is not None:
        statement = statement.where(Reservation.status == filters.status)
    if filters.service_id is not None:
        statement = statement.where(Reservation.service_id == filters.service_id)
    if after is not None:
        at, last_id = after
        statement = statement.where(
            or_(Reservation.updated_at > at, (Reservation.updated_at == at) & (Reservation.id > last_id))
        )
    rows = [(row.Reservation, row.Service) for row in await session.execute(statement)]
    items = rows[:limit]
    last = items[-1][0] if items else None
    next_cursor = None if last is None else encode_change_cursor(last.updated_at, last.id)
    return Page(items=items, has_more=len(rows) > limit, next_cursor=next_cursor)
