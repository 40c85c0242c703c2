"""`litestar keys usage`: a key's usage, as its usage page shows it, in the `keys` group (importing this adds it)."""

from __future__ import annotations

import json
from typing import Any

import click
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.services import OrganizationService
from app.domain.api_keys.cli import iso, keys_group
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService, KeyLookupError
from app.domain.usage.services import (
    DEFAULT_RANGE,
    RANGES,
    UsageBucket,
    UsageSummary,
    daily_export,
    summarize,
    usage_csv_text,
)
from app.lib.cli import fails_on, run_in_transaction


def _usage_json(api_key: ApiKey, summary: UsageSummary, time_zone: str) -> dict[str, Any]:
    def outcomes(counts: dict[str, int]) -> dict[str, int]:
        return {outcome: counts.get(outcome, 0) for outcome in summary.outcomes} | {
            "total": sum(counts.values())
        }

    def period(bucket: UsageBucket) -> dict[str, str]:
        if summary.range.hourly:
            return {"hour": bucket.start.isoformat()}
        return {"date": bucket.start.date().isoformat()}

    return {
        "id": str(api_key.id),
        "name": api_key.name,
        "prefix": api_key.prefix,
        "time_zone": time_zone,
        "range": summary.range.name,
        "days" if not summary.range.hourly else "hours": [
            period(bucket) | outcomes(bucket.counts) for bucket in summary.buckets
        ],
        "totals": outcomes(summary.totals),
        "average_latency_ms": summary.average_latency_ms,
        "top_routes": [
            {"method": route.method, "route": route.route, "requests": route.requests}
            for route in summary.top_routes
        ],
        "last_used_at": iso(summary.last_used_at),
    }


@keys_group.command(name="usage")
@click.argument("id_or_prefix")
@click.option(
    "--range",
    "range_name",
    type=click.Choice(list(RANGES)),
    default=DEFAULT_RANGE,
    show_default=True,
    help="The period, as on the usage page.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Every retained day per route, method and outcome, as the page's CSV export.",
)
@fails_on(KeyLookupError)
def key_usage(app: Litestar, id_or_prefix: str, range_name: str, as_json: bool, as_csv: bool) -> None:
    """A key's usage over a range (30 days by default): per day or hour, totals, top routes and last use."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")

    async def work(session: AsyncSession) -> dict[str, Any] | str:
        api_key = await ApiKeyService(session=session).find_by_id_or_prefix(id_or_prefix)
        if as_csv:
            return usage_csv_text(await daily_export(session, api_key))
        organization = await OrganizationService(session=session).get(api_key.organization_id)
        summary = await summarize(
            session, api_key, organization.time_zone, app.state["clock"](), RANGES[range_name]
        )
        return _usage_json(api_key, summary, organization.time_zone)

    usage = run_in_transaction(app, work)
    if isinstance(usage, str):
        click.echo(usage, nl=False)
        return
    if as_json:
        click.echo(json.dumps(usage, indent=2))
        return
    totals = usage["totals"]
    label = RANGES[range_name].label
    periods = usage.get("days") or usage.get("hours") or []
    click.echo(f"{usage['name']} ({usage['prefix']}...), last {label}, days in {usage['time_zone']}")
    click.echo(
        f"Requests: {totals['total']}  "
        + "  ".join(f"{outcome} {count}" for outcome, count in totals.items() if outcome != "total")
    )
    latency = usage["average_latency_ms"]
    click.echo(f"Average latency: {f'{latency:.1f} ms' if latency is not None else '-'}")
    click.echo(f"Last used: {usage['last_used_at'] or 'never'}")
    click.echo(f"Per {'hour' if 'hours' in usage else 'day'} (with requests):")
    for entry in periods:
        if entry["total"]:
            when = entry.get("date") or entry.get("hour")
            counts = "  ".join(
                f"{outcome} {count}"
                for outcome, count in entry.items()
                if outcome not in ("date", "hour", "total")
            )
            click.echo(f"  {when}  {entry['total']:>7}  {counts}")
    click.echo("Top routes:")
    for route in usage["top_routes"]:
        click.echo(f"  {route['requests']:>7}  {route['method']} {route['route']}")
