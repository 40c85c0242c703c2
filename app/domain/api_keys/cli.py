"""`litestar keys ...`: the API Keys page for automation, with the same rules and messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import fail, run_in_transaction
from app.domain.accounts.services import InvalidAccountData, OrganizationService
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService, IssuedKey, KeyLookupError
from app.domain.audit.services import CLI_ACTOR
from app.domain.usage.services import OUTCOMES, UsageDay, UsageSummary, summarize


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def key_summary(api_key: ApiKey, now: datetime) -> dict[str, Any]:
    return {
        "id": str(api_key.id),
        "name": api_key.name,
        "prefix": api_key.prefix,
        "scopes": list(api_key.scopes),
        "status": rules.key_status(revoked_at=api_key.revoked_at, expires_at=api_key.expires_at, now=now),
        "allowed_origins": list(api_key.allowed_origins),
        "rate_limit_per_minute": api_key.rate_limit_per_minute,
        "expires_at": _iso(api_key.expires_at),
        "last_used_at": _iso(api_key.last_used_at),
        "created_at": _iso(api_key.created_at),
    }


@click.group(cls=LitestarGroup, name="keys")
def keys_group() -> None:
    """Manage API keys."""


@keys_group.command(name="create")
@click.option("--org", "org_slug", required=True, help="Slug of the organization that owns the key.")
@click.option("--name", required=True)
@click.option("--scopes", required=True, help="Comma-separated: read, write or read,write.")
@click.option("--origins", default="", help="Comma-separated allowed origins; empty allows all.")
@click.option(
    "--rate-limit", default=str(rules.RATE_LIMIT_DEFAULT), show_default=True, help="Requests per minute."
)
@click.option("--expires-in-days", default=None, help="30, 90 or 365; omit for a key that never expires.")
def create_key(
    app: Litestar,
    org_slug: str,
    name: str,
    scopes: str,
    origins: str,
    rate_limit: str,
    expires_in_days: str | None,
) -> None:
    """Create a key. The full key is printed once, as the last line."""
    try:
        request = rules.validate_key_request(
            name=name,
            scopes=scopes.split(","),
            origins=origins,
            rate_limit=rate_limit,
            expires_in_days=expires_in_days,
        )
    except rules.InvalidKeyRequest as invalid:
        fail(" ".join(invalid.errors.values()))

    async def work(session: AsyncSession) -> IssuedKey:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        return await ApiKeyService(session=session).issue(organization.id, request, actor=CLI_ACTOR)

    try:
        issued = run_in_transaction(app, work)
    except InvalidAccountData as exc:
        fail(str(exc))
    click.echo(
        f"Created API key {issued.api_key.name!r} ({issued.api_key.id}), prefix {issued.api_key.prefix}..."
    )
    click.echo("Copy the key now: it is shown only once.")
    click.echo(issued.secret)


@keys_group.command(name="list")
@click.option("--org", "org_slug", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_keys(app: Litestar, org_slug: str, as_json: bool) -> None:
    """List an organization's keys (prefixes only)."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        keys = await ApiKeyService(session=session).list_for_organization(organization.id)
        now = datetime.now(UTC)
        return [key_summary(key, now) for key in keys]

    try:
        summaries = run_in_transaction(app, work)
    except InvalidAccountData as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        click.echo(f"No API keys in {org_slug}.")
    for key in summaries:
        click.echo(
            f"{key['id']}  {key['prefix']}...  {key['status']:<8} {','.join(key['scopes']):<11}"
            f" {key['rate_limit_per_minute']:>4}/min  last used {key['last_used_at'] or 'never'}  {key['name']}"
        )


@keys_group.command(name="revoke")
@click.argument("id_or_prefix")
def revoke_key(app: Litestar, id_or_prefix: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""

    async def work(session: AsyncSession) -> ApiKey:
        service = ApiKeyService(session=session)
        return await service.revoke(await service.find_by_id_or_prefix(id_or_prefix), actor=CLI_ACTOR)

    try:
        api_key = run_in_transaction(app, work)
    except KeyLookupError as exc:
        fail(str(exc))
    click.echo(f"Revoked API key {api_key.name!r} ({api_key.prefix}...).")


@keys_group.command(name="delete")
@click.argument("id_or_prefix")
def delete_key(app: Litestar, id_or_prefix: str) -> None:
    """Delete a key and its usage logs for good."""

    async def work(session: AsyncSession) -> ApiKey:
        service = ApiKeyService(session=session)
        api_key = await service.find_by_id_or_prefix(id_or_prefix)
        await service.remove(api_key, actor=CLI_ACTOR)
        return api_key

    try:
        api_key = run_in_transaction(app, work)
    except KeyLookupError as exc:
        fail(str(exc))
    click.echo(f"Deleted API key {api_key.name!r} ({api_key.prefix}...).")


def _usage_json(api_key: ApiKey, summary: UsageSummary, time_zone: str) -> dict[str, Any]:
    def outcomes(day: UsageDay) -> dict[str, int]:
        return {outcome: getattr(day, outcome) for outcome in OUTCOMES} | {"total": day.total}

    return {
        "id": str(api_key.id),
        "name": api_key.name,
        "prefix": api_key.prefix,
        "time_zone": time_zone,
        "days": [{"date": day.day.isoformat()} | outcomes(day) for day in summary.days],
        "totals": outcomes(summary.totals),
        "average_latency_ms": summary.average_latency_ms,
        "top_routes": [
            {"method": route.method, "route": route.route, "requests": route.requests}
            for route in summary.top_routes
        ],
        "last_used_at": _iso(summary.last_used_at),
    }


@keys_group.command(name="usage")
@click.argument("id_or_prefix")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def key_usage(app: Litestar, id_or_prefix: str, as_json: bool) -> None:
    """A key's usage over the last 30 days: per day, totals, top routes and last use."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        api_key = await ApiKeyService(session=session).find_by_id_or_prefix(id_or_prefix)
        organization = await OrganizationService(session=session).get(api_key.organization_id)
        summary = await summarize(session, api_key, organization.time_zone, datetime.now(UTC))
        return _usage_json(api_key, summary, organization.time_zone)

    try:
        usage = run_in_transaction(app, work)
    except KeyLookupError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(usage, indent=2))
        return
    totals = usage["totals"]
    click.echo(f"{usage['name']} ({usage['prefix']}...), last 30 days, days in {usage['time_zone']}")
    click.echo(
        f"Requests: {totals['total']}  success {totals['success']}  client errors {totals['client_error']}"
        f"  rate-limited {totals['rate_limited']}  server errors {totals['server_error']}"
    )
    latency = usage["average_latency_ms"]
    click.echo(f"Average latency: {f'{latency:.1f} ms' if latency is not None else '-'}")
    click.echo(f"Last used: {usage['last_used_at'] or 'never'}")
    click.echo("Per day (days with requests):")
    for day in usage["days"]:
        if day["total"]:
            click.echo(
                f"  {day['date']}  {day['total']:>7}  ok {day['success']}  4xx {day['client_error']}"
                f"  429 {day['rate_limited']}  5xx {day['server_error']}"
            )
    click.echo("Top routes:")
    for route in usage["top_routes"]:
        click.echo(f"  {route['requests']:>7}  {route['method']} {route['route']}")
