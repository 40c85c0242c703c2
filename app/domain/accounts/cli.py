"""`litestar accounts ...`: organizations and staff users for real deployments."""

from __future__ import annotations

import click
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import ROLES
from app.domain.accounts.services import (
    InvalidAccountData,
    NewOrganization,
    NewUser,
    OrganizationService,
    UserService,
)
from app.lib.cli import fails_on, run_in_transaction


@click.group(cls=LitestarGroup, name="accounts")
def accounts_group() -> None:
    """Manage organizations and their staff."""


@accounts_group.command(name="create-org")
@click.option("--name", required=True, help="Display name, e.g. 'Demo Studio'.")
@click.option("--slug", required=True, help="Short unique id used by the CLI, e.g. 'demo'.")
@click.option("--time-zone", required=True, help="IANA time zone, e.g. Europe/London.")
@fails_on(InvalidAccountData)
def create_org(app: Litestar, name: str, slug: str, time_zone: str) -> None:
    """Create an organization."""
    data = NewOrganization.validate(name=name, slug=slug, time_zone=time_zone)

    async def work(session: AsyncSession) -> str:
        organization = await OrganizationService(session=session).create_organization(data)
        return str(organization.id)

    organization_id = run_in_transaction(app, work)
    click.echo(f"Created organization {data.slug} ({organization_id}).")


@accounts_group.command(name="create-user")
@click.option("--org", "org_slug", required=True, help="Slug of the user's organization.")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(ROLES), default="staff", show_default=True)
@click.password_option("--password", help="Prompted for when not given (at least 8 characters).")
@fails_on(InvalidAccountData)
def create_user(app: Litestar, org_slug: str, email: str, role: str, password: str) -> None:
    """Create a staff user who signs in with email and password."""
    data = NewUser.validate(email=email, password=password, role=role)

    async def work(session: AsyncSession) -> None:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        await UserService(session=session).create_user(organization, data)

    run_in_transaction(app, work)
    click.echo(f"Created {data.role} {data.email} in {org_slug}.")
