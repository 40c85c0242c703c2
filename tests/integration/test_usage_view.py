"""A key's usage view from the rollups: ranges kept in the URL, its HTMX partial, the CSV export, free outcomes."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import insert

from app.domain.usage.jobs import fold_usage
from app.domain.usage.models import usage_daily, usage_hourly
from app.domain.usage.recorder import REFUSED_EXPIRED, REFUSED_REVOKED
from app.lib.clock import SettableClock
from app.lib.db import transaction
from app.settings import Settings
from app.workers import job_context
from tests.api_helpers import key_id_of, make_key, recorded_sql
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
# 14:30 in London on Wed 2 Dec 2026.
NOW = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
async def used_key(app: Litestar, settings: Settings, studio: Staff, clock: SettableClock) -> str:
    """A key with requests now, 5 hours ago, 3 days ago, 20 days ago and 60 days ago."""
    clock.set(NOW)
    key_id = await key_id_of(app, await make_key(app, studio))
    at = NOW.timestamp()
    hour, day = 3600, 86400
    events = (
        [(key_id.hex, at, "GET", "/api/v1/services", 200, 2000)] * 5
        + [(key_id.hex, at - 5 * hour, "GET", "/api/v1/services", 500, 4000)] * 2
        + [(key_id.hex, at - 3 * day, "POST", "/api/v1/reservations", 404, 1000)] * 3
        + [(key_id.hex, at - 20 * day, "GET", "/api/v1/services", 429, 100)] * 4
        + [(key_id.hex, at - 60 * day, "GET", "/api/v1/packages", 200, 100)] * 6
    )
    await fold_usage(job_context(settings, alchemy_of(app)), batch_id="view", events=events)  # type: ignore[arg-type]
    return str(key_id)


def total_shown(html: str) -> str:
    match = re.search(r'<dd id="total-requests">([^<]*)</dd>', html)
    assert match is not None
    return match.group(1)


async def test_each_range_shows_its_own_period_from_the_rollups_only(
    admin_client: Client, app: Litestar, used_key: str
) -> None:
    url = f"/settings/api-keys/{used_key}/usage"
    expected = {
        "24h": ("7", 24, "Hour"),
        "7d": ("10", 7, "Day"),
        "30d": ("14", 30, "Day"),
        "90d": ("20", 90, "Day"),
    }
    for name, (total, bars, heading) in expected.items():
        with recorded_sql(app) as statements:
            page = await admin_client.get(url, params={"range": name})
        assert page.status_code == 200
        assert total_shown(page.text) == total, name
        # One bar slot per hour or day in each of the two layouts, and a row per hour or day in the table.
        assert page.text.count('class="slot"') == 2 * bars
        assert page.text.count('<th scope="row">') == bars
        assert f'<th scope="col">{heading}</th>' in page.text
        assert re.search(rf'href="{url}\?range={name}"[^>]*\n?[^>]*aria-current="true"', page.text), name
        usage_sql = [sql for sql in statements if "usage_" in sql]
        assert usage_sql and all("usage_counts" not in sql for sql in usage_sql), usage_sql
    # Mean latency over the range: (5 x 2 ms + 2 x 4 ms) / 7 in the last 24 hours.
    day_page = await admin_client.get(url, params={"range": "24h"})
    assert "<dt>Average latency</dt><dd>2.6 ms</dd>" in day_page.text
    # Without a range: 30 days.
    assert total_shown((await admin_client.get(url)).text) == "14"


async def test_the_range_links_swap_the_view_and_keep_the_range_in_the_url(
    admin_client: Client, used_key: str
) -> None:
    url = f"/settings/api-keys/{used_key}/usage"
    page = await admin_client.get(url)
    link = re.search(
        rf'<a href="{url}\?range=7d" hx-get="([^"]+)"\s+hx-target="#usage-view"[^>]*hx-push-url="([^"]+)"',
        page.text,
    )
    assert link is not None and link.group(2) == f"{url}?range=7d"
    partial = await admin_client.get(link.group(1), headers={"HX-Request": "true", "HX-Target": "usage-view"})
    assert partial.status_code == 200
    assert (
        partial.text.lstrip().startswith('<div id="usage-view"')
        or '<div id="usage-view"' in partial.text[:300]
    )
    assert "<html" not in partial.text and total_shown(partial.text) == "10"


async def test_an_unknown_range_is_a_clear_error(admin_client: Client, used_key: str) -> None:
    page = await admin_client.get(f"/settings/api-keys/{used_key}/usage", params={"range": "1y"})
    assert page.status_code == 400
    assert "choose one of 24h, 7d, 30d, 90d" in page.text


async def test_an_empty_range_says_so_inside_the_chart(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    key_id = await key_id_of(app, await make_key(app, studio))
    page = await admin_client.get(f"/settings/api-keys/{key_id}/usage", params={"range": "7d"})
    assert page.text.count('<text class="empty"') == 2
    assert "No requests in the last 7 days</text>" in page.text
    # No made-up scale: only the baseline's 0.
    assert re.findall(r'text-anchor="end">([^<]*)</text>', page.text) == ["0", "0"]


async def test_outcomes_are_free_strings_and_each_is_a_series(
    admin_client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    clock.set(NOW)
    key_id = await key_id_of(app, await make_key(app, studio))
    row = {"key_id": key_id, "method": "GET", "route": "/api/v1/services", "total_latency_us": 10}
    async with transaction(alchemy_of(app)) as session:
        for status_class, requests in (("2xx", 5), ("key_revoked", 3)):
            await session.execute(
                insert(usage_daily).values(
                    day=NOW.date(), status_class=status_class, request_count=requests, **row
                )
            )
            await session.execute(
                insert(usage_hourly).values(
                    hour=NOW.replace(minute=0), status_class=status_class, request_count=requests, **row
                )
            )
    for name in ("24h", "30d"):
        html = (await admin_client.get(f"/settings/api-keys/{key_id}/usage", params={"range": name})).text
        assert "<dt>Key revoked</dt><dd>3</dd>" in html
        assert html.count('class="bar extra-0"') == 2
        assert '<span class="swatch extra-0"></span>Key revoked' in html
        assert '<th scope="col">Key revoked</th>' in html


async def test_refusals_of_revoked_and_expired_keys_are_series_of_their_own(
    admin_client: Client, app: Litestar, settings: Settings, studio: Staff, clock: SettableClock
) -> None:
    """Requests refused because the key is revoked or expired: labelled series in the chart, its legend, its
    table and the totals, and outcomes in the export; they do not move Last Used."""
    clock.set(NOW)
    key_id = await key_id_of(app, await make_key(app, studio))
    at = NOW.timestamp()
    route = "/api/v1/services"
    events = [(key_id.hex, at, "GET", route, REFUSED_REVOKED, 500)] * 3 + [
        (key_id.hex, at - 3600, "GET", route, REFUSED_EXPIRED, 500)
    ] * 4
    await fold_usage(job_context(settings, alchemy_of(app)), batch_id="refusals", events=events)  # type: ignore[arg-type]
    for name in ("24h", "7d"):
        html = (await admin_client.get(f"/settings/api-keys/{key_id}/usage", params={"range": name})).text
        assert total_shown(html) == "7", name
        assert "<dt>Refused: key revoked</dt><dd>3</dd>" in html
        assert "<dt>Refused: key expired</dt><dd>4</dd>" in html
        for outcome, label in (
            ("refused_revoked", "Refused: key revoked"),
            ("refused_expired", "Refused: key expired"),
        ):
            assert f'<span class="swatch {outcome}"></span>{label}' in html
            assert f'<th scope="col">{label}</th>' in html
            assert html.count(f'class="bar {outcome}"') == 2  # one bar in each layout
        assert "<dt>Last Used</dt><dd>Never</dd>" in html
    rows = list(
        csv.reader(io.StringIO((await admin_client.get(f"/settings/api-keys/{key_id}/usage.csv")).text))
    )
    assert rows[1:] == [
        [str(NOW.date()), route, "GET", "refused_expired", "4", "0.5"],
        [str(NOW.date()), route, "GET", "refused_revoked", "3", "0.5"],
    ]


async def test_usage_csv_is_every_day_per_route_method_and_outcome_for_admins(
    client: Client, app: Litestar, used_key: str, studio: Staff, other_studio: Staff
) -> None:
    await sign_in(client, studio.admin)
    response = await client.get(f"/settings/api-keys/{used_key}/usage.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    day = NOW.date()
    assert rows == [
        ["day", "route", "method", "outcome", "requests", "mean_latency_ms"],
        [str(day - timedelta(days=60)), "/api/v1/packages", "GET", "success", "6", "0.1"],
        [str(day - timedelta(days=20)), "/api/v1/services", "GET", "rate_limited", "4", "0.1"],
        [str(day - timedelta(days=3)), "/api/v1/reservations", "POST", "client_error", "3", "1.0"],
        [str(day), "/api/v1/services", "GET", "server_error", "2", "4.0"],
        [str(day), "/api/v1/services", "GET", "success", "5", "2.0"],
    ]
    theirs = await key_id_of(app, await make_key(app, other_studio))
    assert (await client.get(f"/settings/api-keys/{theirs}/usage.csv")).status_code == 404
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, studio.staff)
    assert (await client.get(f"/settings/api-keys/{used_key}/usage.csv")).status_code == 403


async def test_the_api_keys_table_shows_each_keys_last_7_days_in_one_query(
    admin_client: Client,
    app: Litestar,
    settings: Settings,
    studio: Staff,
    other_studio: Staff,
    clock: SettableClock,
) -> None:
    clock.set(NOW)
    ctx = job_context(settings, alchemy_of(app))
    day = 86400

    async def key_with(requests_now: int, requests_8_days_ago: int) -> str:
        key_id = await key_id_of(app, await make_key(app, studio))
        events = [(key_id.hex, NOW.timestamp(), "GET", "/r", 200, 1)] * requests_now + [
            (key_id.hex, NOW.timestamp() - 8 * day, "GET", "/r", 500, 1)
        ] * requests_8_days_ago
        await fold_usage(ctx, batch_id=str(key_id), events=events)  # type: ignore[arg-type]
        return str(key_id)

    async def table() -> tuple[dict[str, str], list[str]]:
        with recorded_sql(app) as statements:
            html = (await admin_client.get("/settings/api-keys")).text
        shown = dict(
            re.findall(r'<tr id="key-([^"]+)">.*?<td class="requests"[^>]*><a [^>]*>([^<]*)</a>', html, re.S)
        )
        return shown, statements

    first = [await key_with(1200, 5), await key_with(0, 9)]
    theirs = await key_id_of(app, await make_key(app, other_studio))
    await fold_usage(ctx, batch_id="theirs", events=[(theirs.hex, NOW.timestamp(), "GET", "/r", 200, 1)] * 4)  # type: ignore[arg-type]
    shown, few_keys = await table()
    assert shown == {first[0]: "1,200", first[1]: "0"}
    more = [await key_with(n, 1) for n in (1, 2, 3, 4)]
    shown, many_keys = await table()
    assert shown == {first[0]: "1,200", first[1]: "0"} | {
        key: str(n) for key, n in zip(more, (1, 2, 3, 4), strict=True)
    }
    # Four keys more, not a statement more: the column is one query for the whole table.
    assert len(many_keys) == len(few_keys)
    assert sum("usage_daily" in sql for sql in many_keys) == 1
