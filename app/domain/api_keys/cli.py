"""`litestar keys ...`: the API Keys page for automation, with the same rules and messages."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from litestar import Litestar
from litestar.cli._utils import LitestarGroup
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import Organization
from app.domain.accounts.services import InvalidAccountData, OrganizationService
from app.domain.api_keys import leaks, rules
from app.domain.api_keys.authentication import ApiClient, KeyStore, live_client
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService, IssuedKey, KeyLookupError, KeyNotRollable
from app.domain.audit.services import CLI_ACTOR
from app.lib.cli import fail, fails_on, run_in_transaction


def iso(moment: datetime | None) -> str | None:
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
        "expires_at": iso(api_key.expires_at),
        # A rolled key's previous secret: its prefix and when it stops (or stopped) working.
        "previous_prefix": api_key.previous_prefix,
        "previous_secret_expires_at": iso(api_key.previous_expires_at),
        "last_used_at": iso(api_key.last_used_at),
        "created_at": iso(api_key.created_at),
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
@click.option(
    "--expires-on", default=None, help="Or a date (YYYY-MM-DD): the key expires at the end of that day."
)
@fails_on(rules.InvalidKeyRequest, InvalidAccountData)
def create_key(
    app: Litestar,
    org_slug: str,
    name: str,
    scopes: str,
    origins: str,
    rate_limit: str,
    expires_in_days: str | None,
    expires_on: str | None,
) -> None:
    """Create a key. The full key is printed once, as the last line."""
    if expires_in_days is not None and expires_on is not None:
        fail("Give --expires-in-days or --expires-on, not both.")

    async def work(session: AsyncSession) -> IssuedKey:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        now: datetime = app.state["clock"]()
        request = rules.validate_key_request(
            name=name,
            scopes=scopes.split(","),
            origins=origins,
            rate_limit=rate_limit,
            expires_in_days=expires_in_days,
            expires_on=expires_on,
            today=now.astimezone(ZoneInfo(organization.time_zone)).date(),
        )
        return await ApiKeyService(session=session).issue(
            organization.id, request, actor=CLI_ACTOR, now=now, time_zone=organization.time_zone
        )

    issued = run_in_transaction(app, work)
    click.echo(
        f"Created API key {issued.api_key.name!r} ({issued.api_key.id}), prefix {issued.api_key.prefix}..."
    )
    click.echo("Copy the key now: it is shown only once.")
    click.echo(issued.secret)


@keys_group.command(name="list")
@click.option("--org", "org_slug", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fails_on(InvalidAccountData)
def list_keys(app: Litestar, org_slug: str, as_json: bool) -> None:
    """List an organization's keys (prefixes only)."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        organization = await OrganizationService(session=session).get_by_slug(org_slug)
        keys = await ApiKeyService(session=session).list_for_organization(organization.id)
        now = app.state["clock"]()
        return [key_summary(key, now) for key in keys]

    summaries = run_in_transaction(app, work)
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


def _show_lines(summary: dict[str, Any], now: datetime) -> list[str]:
    lines = [
        f"{summary['name']} ({summary['id']})",
        f"  prefix          {summary['prefix']}...",
        f"  status          {summary['status']}",
        f"  scopes          {','.join(summary['scopes'])}",
        f"  allowed origins {', '.join(summary['allowed_origins']) or 'any'}",
        f"  rate limit      {summary['rate_limit_per_minute']}/min",
        f"  expires         {summary['expires_at'] or 'never'}",
    ]
    ends = summary["previous_secret_expires_at"]
    if ends is not None and datetime.fromisoformat(ends) > now:
        lines.append(f"  previous secret {summary['previous_prefix']}... works until {ends}")
    lines += [
        f"  last used       {summary['last_used_at'] or 'never'}",
        f"  created         {summary['created_at']}",
    ]
    return lines


@keys_group.command(name="show")
@click.argument("id_or_prefix")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@fails_on(KeyLookupError)
def show_key(app: Litestar, id_or_prefix: str, as_json: bool) -> None:
    """Show one key (by id or prefix): its settings, expiry and previous secret. Never the secret."""
    now: datetime = app.state["clock"]()

    async def work(session: AsyncSession) -> dict[str, Any]:
        return key_summary(await ApiKeyService(session=session).find_by_id_or_prefix(id_or_prefix), now)

    summary = run_in_transaction(app, work)
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(_show_lines(summary, now)))


@keys_group.command(name="update")
@click.argument("id_or_prefix")
@click.option("--name", default=None)
@click.option("--scopes", default=None, help="Comma-separated: read, write or read,write.")
@click.option("--origins", default=None, help='Comma-separated allowed origins; "" allows all.')
@click.option("--rate-limit", default=None, help="Requests per minute, 1 to 1000.")
@click.option("--expires-in-days", default=None, help="30, 90 or 365 days from now.")
@click.option("--expires-on", default=None, help="A date (YYYY-MM-DD): expires at the end of that day.")
@click.option("--no-expiry", is_flag=True, help="The key never expires.")
@fails_on(KeyLookupError, rules.InvalidKeyRequest)
def update_key(
    app: Litestar,
    id_or_prefix: str,
    name: str | None,
    scopes: str | None,
    origins: str | None,
    rate_limit: str | None,
    expires_in_days: str | None,
    expires_on: str | None,
    no_expiry: bool,
) -> None:
    """Change a key's settings in place; what is not given stays. The next request sees the change."""
    expiry_options = [expires_in_days is not None, expires_on is not None, no_expiry]
    if sum(expiry_options) > 1:
        fail("Give one of --expires-in-days, --expires-on and --no-expiry.")
    if not any(expiry_options) and all(value is None for value in (name, scopes, origins, rate_limit)):
        fail("Nothing to change: give --name, --scopes, --origins, --rate-limit or an expiry option.")

    async def work(session: AsyncSession) -> tuple[ApiKey, dict[str, Any]]:
        service = ApiKeyService(session=session)
        api_key = await service.find_by_id_or_prefix(id_or_prefix)
        time_zone = (await session.get_one(Organization, api_key.organization_id)).time_zone
        now: datetime = app.state["clock"]()
        expiry: str | None = rules.EXPIRY_KEEP
        if no_expiry:
            expiry = rules.EXPIRY_NEVER
        elif expires_on is not None:
            expiry = rules.EXPIRY_CUSTOM
        elif expires_in_days is not None:
            expiry = expires_in_days
        request = rules.validate_key_request(
            name=api_key.name if name is None else name,
            scopes=api_key.scopes if scopes is None else scopes.split(","),
            origins=",".join(api_key.allowed_origins) if origins is None else origins,
            rate_limit=api_key.rate_limit_per_minute if rate_limit is None else rate_limit,
            expires_in_days=expiry,
            expires_on=expires_on,
            today=now.astimezone(ZoneInfo(time_zone)).date(),
            allow_keep=True,
        )
        before = key_summary(api_key, now)
        api_key = await service.edit(api_key, request, actor=CLI_ACTOR, now=now, time_zone=time_zone)
        return api_key, before

    api_key, before = run_in_transaction(app, work)
    after = key_summary(api_key, app.state["clock"]())
    changed = [field for field in before if before[field] != after[field]]
    if not changed:
        click.echo(f"API key {api_key.name!r} ({api_key.prefix}...) already had these settings.")
        return
    click.echo(f"Updated API key {api_key.name!r} ({api_key.prefix}...):")
    for field in changed:
        click.echo(f"  {field}: {json.dumps(before[field])} -> {json.dumps(after[field])}")


@keys_group.command(name="roll")
@click.argument("id_or_prefix")
@click.option(
    "--grace",
    required=True,
    help="How long the current secret keeps working: 0, 30s, 15m, 1h, 24h or 7d (at most 7 days).",
)
@fails_on(KeyLookupError, rules.InvalidGrace, KeyNotRollable)
def roll_key(app: Litestar, id_or_prefix: str, grace: str) -> None:
    """Issue a new secret for a key (same id, settings and usage). The new key is printed once, as the last line."""
    duration = rules.parse_grace(grace)

    async def work(session: AsyncSession) -> IssuedKey:
        service = ApiKeyService(session=session)
        api_key = await service.find_by_id_or_prefix(id_or_prefix)
        return await service.roll(api_key, duration, actor=CLI_ACTOR, now=app.state["clock"]())

    issued = run_in_transaction(app, work)
    api_key, ended = issued.api_key, issued.ended_previous_prefix
    click.echo(f"Rolled API key {api_key.name!r} ({api_key.id}), new prefix {api_key.prefix}...")
    if ended is not None:
        click.echo(f"The older previous secret {ended}... stopped working now (a key keeps at most one).")
    click.echo(
        f"The previous secret {api_key.previous_prefix}... works until {iso(api_key.previous_expires_at)}."
    )
    click.echo("Copy the key now: it is shown only once.")
    click.echo(issued.secret)


@keys_group.command(name="revoke")
@click.argument("id_or_prefix")
@fails_on(KeyLookupError)
def revoke_key(app: Litestar, id_or_prefix: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""

    async def work(session: AsyncSession) -> ApiKey:
        service = ApiKeyService(session=session)
        return await service.revoke(
            await service.find_by_id_or_prefix(id_or_prefix), actor=CLI_ACTOR, now=app.state["clock"]()
        )

    api_key = run_in_transaction(app, work)
    click.echo(f"Revoked API key {api_key.name!r} ({api_key.prefix}...).")


@keys_group.command(name="delete")
@click.argument("id_or_prefix")
@fails_on(KeyLookupError)
def delete_key(app: Litestar, id_or_prefix: str) -> None:
    """Delete a key and its usage logs for good."""

    async def work(session: AsyncSession) -> ApiKey:
        service = ApiKeyService(session=session)
        api_key = await service.find_by_id_or_prefix(id_or_prefix)
        await service.remove(api_key, actor=CLI_ACTOR)
        return api_key

    api_key = run_in_transaction(app, work)
    click.echo(f"Deleted API key {api_key.name!r} ({api_key.prefix}...).")


def _live_clients(app: Litestar, keys: set[str]) -> dict[str, ApiClient | None]:
    """Each key's caller as the API's guard would see it now, from the app's database."""
    alchemy = app.state["alchemy"]

    async def main() -> dict[str, ApiClient | None]:
        engine = alchemy.get_engine()
        store = KeyStore(engine)
        try:
            return {key: await live_client(store, key) for key in sorted(keys)}
        finally:
            await engine.dispose()

    return asyncio.run(main())


@keys_group.command(name="scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--check-live",
    is_flag=True,
    help="Also say which keys are live keys of this installation (the database of DATABASE_URL).",
)
def scan_keys(app: Litestar, paths: tuple[Path, ...], check_live: bool) -> None:
    """Find QuickVisit keys in files and directories; exit 1 if any is found (pre-commit hooks, CI).

    Skips .git, binary files and files over 10 MiB; a key is reported only if its checksum is right.
    Prints file:line and the key's prefix, never the key.
    """
    findings: list[leaks.Finding] = []
    for item in leaks.scan_paths(paths):
        if isinstance(item, leaks.Skipped):
            if item.reason.startswith("unreadable"):
                click.echo(f"{item.path}: skipped, {item.reason}", err=True)
        else:
            findings.append(item)
    live: dict[str, ApiClient | None] = {}
    if check_live and findings:
        try:
            live = _live_clients(app, {finding.key for finding in findings})
        except (OperationalError, DBAPIError, OSError) as exc:
            fail(
                f"Cannot check the keys against the database (DATABASE_URL): {getattr(exc, 'orig', None) or exc}"
            )
    for finding in findings:
        line = f"{finding.location}: {finding.prefix}..."
        if check_live:
            client = live[finding.key]
            line += (
                f"  LIVE key of this installation (id {client.key_id}): revoke it"
                if client is not None
                else "  not a live key of this installation"
            )
        click.echo(line)
    if findings:
        files = len({finding.path for finding in findings})
        click.echo(f"{len(findings)} QuickVisit key(s) found in {files} file(s).", err=True)
        sys.exit(1)
    click.echo("No QuickVisit keys found.", err=True)
