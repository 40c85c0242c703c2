"""Demo data for development: `litestar demo seed` (idempotent; refused in production)."""

from __future__ import annotations

from datetime import time

import click
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import Organization
from app.domain.accounts.services import NewOrganization, NewUser, OrganizationService, UserService
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.booking.models import OpeningHours, Package, Service
from app.domain.webhooks import rules as webhook_rules
from app.domain.webhooks.models import WebhookEndpoint
from app.lib.cli import fail, run_in_transaction
from app.settings import Settings

DEMO_ORGANIZATION = NewOrganization(name="Demo Studio", slug="demo", time_zone="Europe/London")
DEMO_PASSWORD = "demo1234"  # noqa: S105  (published demo credentials, dev only)
DEMO_USERS = (
    NewUser(email="demo@example.com", password=DEMO_PASSWORD, role="admin"),
    NewUser(email="staff@example.com", password=DEMO_PASSWORD, role="staff"),
)


# A published, development-only key (like a payment provider's test keys), so the README's curl examples work.
DEMO_API_KEY = "qv_pk_DemoStudioLocalDevelopmentKey00146VJSZ"
# The demo website `make run` serves on a second origin, and the published key its booking widget embeds:
# it books (read and write) and only that origin may use it, as a real website's widget key would.
DEMO_SITE_ORIGIN = "http://127.0.0.1:8001"
DEMO_WIDGET_KEY = "qv_pk_WidgetDemoStudioWebsiteKey0000010kmUFI"
# The demo website's webhook receiver (app.devsite): `make run` shows webhooks end to end.
DEMO_WEBHOOK_URL = f"{DEMO_SITE_ORIGIN}/webhooks"
DEMO_WIDGET_RATE_LIMIT = 120


def demo_services(organization: Organization) -> list[Service]:
    common = {"organization_id": organization.id, "currency": "GBP", "booking_horizon_days": 60}
    return [
        Service(
            name="Deep Tissue Massage",
            description="A one-to-one 60-minute massage.",
            duration_minutes=60,
            price_amount=6500,
            capacity=1,
            slot_interval_minutes=30,
            min_notice_minutes=120,
            buffer_after_minutes=15,
            **common,
        ),
        Service(
            name="Vinyasa Yoga",
            description="A flowing 75-minute class for up to 12 people.",
            duration_minutes=75,
            price_amount=1500,
            capacity=12,
            slot_interval_minutes=90,
            min_notice_minutes=30,
            **common,
        ),
        Service(
            name="Free Consultation",
            description="A free 30-minute chat to find what suits you.",
            duration_minutes=30,
            price_amount=0,
            capacity=1,
            slot_interval_minutes=30,
            min_notice_minutes=60,
            **common,
        ),
    ]


async def _seed_catalog(session: AsyncSession, organization: Organization) -> bool:
    if await session.scalar(select(Service.id).where(Service.organization_id == organization.id).limit(1)):
        return False
    massage, yoga, _consultation = services = demo_services(organization)
    session.add_all(services)
    session.add_all(
        [
            Package(
                organization_id=organization.id,
                name="5 Massage Package",
                description="Five deep tissue massages, to use within six months.",
                session_count=5,
                validity_days=180,
                price_amount=30000,
                currency="GBP",
                services=[massage],
            ),
            Package(
                organization_id=organization.id,
                name="10-Class Pass",
                description="Ten yoga classes, to use within three months.",
                session_count=10,
                validity_days=90,
                price_amount=12000,
                currency="GBP",
                services=[yoga],
            ),
        ]
    )
    await session.flush()
    return True


# Monday to Friday 09:00-18:00 with a lunch break, Saturday mornings, closed on Sunday.
DEMO_OPENING_HOURS: tuple[tuple[int, time, time], ...] = (
    *((weekday, time(9), time(13)) for weekday in range(5)),
    *((weekday, time(14), time(18)) for weekday in range(5)),
    (5, time(10), time(14)),
)


async def _seed_opening_hours(session: AsyncSession, organization: Organization) -> bool:
    if await session.scalar(
        select(OpeningHours.id).where(OpeningHours.organization_id == organization.id).limit(1)
    ):
        return False
    session.add_all(
        OpeningHours(organization_id=organization.id, weekday=weekday, opens_at=opens_at, closes_at=closes_at)
        for weekday, opens_at, closes_at in DEMO_OPENING_HOURS
    )
    await session.flush()
    return True


async def _seed_key(
    session: AsyncSession,
    organization: Organization,
    key: str,
    name: str,
    allowed_origins: list[str],
    rate_limit: int,
) -> bool:
    key_hash = rules.hash_key(key)
    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == key_hash)):
        return False
    session.add(
        ApiKey(
            organization_id=organization.id,
            name=name,
            key_hash=key_hash,
            prefix=rules.display_prefix(key),
            scopes=list(rules.SCOPES),
            allowed_origins=allowed_origins,
            rate_limit_per_minute=rate_limit,
        )
    )
    await session.flush()
    return True


async def _seed_webhook(session: AsyncSession, organization: Organization) -> bool:
    exists = await session.scalar(
        select(WebhookEndpoint.id).where(
            WebhookEndpoint.organization_id == organization.id, WebhookEndpoint.url == DEMO_WEBHOOK_URL
        )
    )
    if exists is not None:
        return False
    session.add(
        WebhookEndpoint(
            organization_id=organization.id,
            url=DEMO_WEBHOOK_URL,
            events=list(webhook_rules.EVENT_TYPES),
            enabled=True,
            secret_salt=webhook_rules.new_salt(),
        )
    )
    return True


async def demo_webhook_secret(session: AsyncSession, secret_key: str) -> str | None:
    """The signing secret of the demo website's endpoint, for its receiver to verify with (None: removed)."""
    salt = await session.scalar(
        select(WebhookEndpoint.secret_salt).where(WebhookEndpoint.url == DEMO_WEBHOOK_URL)
    )
    return None if salt is None else webhook_rules.secret_for(secret_key, salt)


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
    created = await _seed_catalog(session, organization) or created
    created = await _seed_opening_hours(session, organization) or created
    created = await _seed_webhook(session, organization) or created
    created = (
        await _seed_key(session, organization, DEMO_API_KEY, "Demo server key", [], rules.RATE_LIMIT_DEFAULT)
        or created
    )
    return (
        await _seed_key(
            session,
            organization,
            DEMO_WIDGET_KEY,
            "Demo website widget",
            [DEMO_SITE_ORIGIN],
            DEMO_WIDGET_RATE_LIMIT,
        )
        or created
    )


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
