"""Reading the catalog of one organization for staff (the Public API reads it through `reads.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.booking.models import Service


async def all_services(session: AsyncSession, organization_id: uuid.UUID) -> Sequence[Service]:
    """Every service of the organization, retired ones too (they have past reservations), by name."""
    statement = select(Service).where(Service.organization_id == organization_id).order_by(Service.name)
    return (await session.scalars(statement)).all()
