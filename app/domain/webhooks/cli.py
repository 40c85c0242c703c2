"""`litestar webhooks ...`: the Webhooks page for automation, with the same rules and messages."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click
from advanced_alchemy.exceptions import NotFoundError
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.services import InvalidAccountData, OrganizationService
from app.domain.audit.services import CLI_ACTOR
from app.domain.errors import InvalidFields
from app.domain.webhooks import services
from app.domain.webhooks.models import WebhookEndpoint
from app.lib.cli import fail, fails_on, run_in_transaction


def _summary(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason or None,
        "created_at": endpoint.created_at.isoformat(),
    }


def _endpoint_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        return fail(f"{text!r} is not an endpoint id (see `litestar webhooks list`).")  # type: ignore[no-any-return]


@click.group(cls=LitestarGroup, name="webhooks")
def webhooks_group() -> None:
    """Manage webhook endpoints."""


@webhooks_group.command(name="add")
@click.option("--org", "org_slug", required=True, help="Slug of the organization that owns the endpoint.")
@click.option("--url", required=True, help="https URL (outside production also http to localhost).")
@click.option(
    "--events", required=True, help="Comma-separated, e.g. reservation.created,reservation.cancelled."
)
@fails_on(InvalidAccountData, InvalidFields)
def add_endpoint(app: Litestar, org_slug: str, url: str, events: str) -> None:
    """Add an endpoint. Its id is printed, and its signing secret once, as the last line."""
    settings = app.state["settings"]

    async def work(session: AsyncSession) -> services.WithSecret:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        return await services.add(
            session,
            organization.id,
            url,
            [name.strip() for name in events.split(",") if name.strip()],
            secret_key=settings.secret_key,
            production=settings.is_production,
            actor=CLI_ACTOR,
        )

    created = run_in_transaction(app, work)
    click.echo(f"Added webhook endpoint {created.endpoint.id} for {created.endpoint.url}")
    click.echo("Copy the signing secret now: it is shown only once.")
    click.echo(created.secret)


@webhooks_group.command(name="list")
@click.option("--org", "org_slug", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fails_on(InvalidAccountData)
def list_endpoints(app: Litestar, org_slug: str, as_json: bool) -> None:
    """List an organization's endpoints (never their secrets)."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        return [_summary(item) for item in await services.for_organization(session, organization.id)]

    summaries = run_in_transaction(app, work)
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        click.echo(f"No webhook endpoints in {org_slug}.")
    for item in summaries:
        state = "enabled" if item["enabled"] else "disabled"
        click.echo(f"{item['id']}  {state:<8} {','.join(item['events'])}  {item['url']}")


@webhooks_group.command(name="remove")
@click.argument("endpoint_id")
@fails_on(NotFoundError)
def remove_endpoint(app: Litestar, endpoint_id: str) -> None:
    """Remove an endpoint and its delivery log."""
    parsed = _endpoint_id(endpoint_id)

    async def work(session: AsyncSession) -> str:
        endpoint = await services.get(session, parsed, None)
        await services.remove(session, endpoint, actor=CLI_ACTOR)
        return endpoint.url

    click.echo(f"Removed webhook endpoint {parsed} ({run_in_transaction(app, work)}).")


@webhooks_group.command(name="deliveries")
@click.argument("endpoint_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fails_on(NotFoundError)
def list_deliveries(app: Litestar, endpoint_id: str, as_json: bool) -> None:
    """The endpoint's latest delivery attempts, newest first."""
    parsed = _endpoint_id(endpoint_id)

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        endpoint = await services.get(session, parsed, None)
        return [
            {
                "at": attempt.created_at.isoformat(),
                "event_id": str(attempt.event_id),
                "event": attempt.event_type,
                "attempt": attempt.attempt,
                "status_code": attempt.status_code,
                "error": attempt.error or None,
                "duration_ms": attempt.duration_ms,
            }
            for attempt in await services.delivery_log(session, endpoint)
        ]

    attempts = run_in_transaction(app, work)
    if as_json:
        click.echo(json.dumps(attempts, indent=2))
        return
    if not attempts:
        click.echo("No deliveries yet.")
    for item in attempts:
        outcome = item["status_code"] or item["error"]
        click.echo(
            f"{item['at']}  {item['event']:<22} attempt {item['attempt']:<2} {outcome}  {item['duration_ms']} ms"
            f"  {item['event_id']}"
        )
