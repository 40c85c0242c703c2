"""Reading the catalog of one organization: only active services and packages are public."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from advanced_alchemy.exceptions import NotFoundError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.pagination import Page, PageRequest, page_from
from app.domain.booking.models import Package, Service

CatalogItem = TypeVar("CatalogItem", Service, Package)


async def list_active(
    session: AsyncSession, model: type[CatalogItem], organization_id: uuid.UUID, page: PageRequest
) -> Page[CatalogItem]:
    statement = (
        select(model)
        .where(model.organization_id == organization_id, model.is_active.is_(True))
        .order_by(model.id)
        .limit(page.limit + 1)
    )
    if page.after is not None:
        statement = statement.where(model.id > page.after)
    rows = (await session.scalars(statement)).all()
    return page_from(rows, page, id_of=lambda item: item.id)


async def get_active(
    session: AsyncSession, model: type[CatalogItem], organization_id: uuid.UUID, item_id: str
) -> CatalogItem:
    """The item, if it is active and this organization's; anything else is simply not found."""
    try:
        parsed = uuid.UUID(item_id)
    except ValueError:
        raise NotFoundError(f"No {model.__tablename__} with id {item_id!r}.") from None
    item = await session.scalar(
        select(model).where(
            model.id == parsed, model.organization_id == organization_id, model.is_active.is_(True)
        )
    )
    if item is None:
        raise NotFoundError(f"No {model.__tablename__} with id {item_id!r}.")
    return item


async def all_services(session: AsyncSession, organization_id: uuid.UUID) -> Sequence[Service]:
    """Every service of the organization, retired ones too (they have past reservations), by name."""
    statement = select(Service).where(Service.organization_id == organization_id).order_by(Service.name)
    return (await session.scalars(statement)).all()
