"""Demo data for development: `litestar demo seed` (idempotent; refused in production)."""

from __future__ import annotations

import click
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import fail, run_in_transaction
from app.domain.accounts.services import NewOrganization, NewUser, OrganizationService, UserService
from app.settings import Settings

DEMO_ORGANIZATION = NewOrganization(name="Demo Studio", slug="demo", time_zone="Europe/London")
DEMO_PASSWORD = "demo1234"  # noqa: S105  (published demo credentials, dev only)
DEMO_USERS = (
    NewUser(email="demo@example.com", password=DEMO_PASSWORD, role="admin"),
    NewUser(email="staff@example.com", password=DEMO_PASSWORD, role="staff"),
)


async def seed_demo(session: AsyncSession) -> bool:
    """Create what is missing of the demo data; True when anything was created."""
    organizations = OrganizationService(session=session)
    users = UserService(session=session)
    created = False
    organization = await organizations.get_one_or_none(slug=DEMO_ORGANIZATION.slug)
    if organization is None:
        organization = await organizations.create_organization(DEMO_ORGANIZATION)
        created = True
    for user in DEMO_USERS:
        if not await users.exists(email=user.email):
            await users.create_user(organization, user)
            created = True
    return created


@click.group(cls=LitestarGroup, name="demo")
def demo_group() -> None:
    """Demo data for development."""


@demo_group.command(name="seed")
def seed(app: Litestar) -> None:
    """Create the demo organization and its staff (idempotent)."""
    settings: Settings = app.state["settings"]
    if settings.is_production:
        fail("Demo data is for development only (APP_ENV=production).")
    created = run_in_transaction(app, seed_demo)
    click.echo("Demo data created." if created else "Demo data already present.")
