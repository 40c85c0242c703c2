"""The key page and the table's lifecycle features over HTTP: edit, roll, delete by typing the name, the
Expires column, filters in the URL, who still calls a dead key, and /help/api-keys. With and without HTMX."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.usage.jobs import fold_usage
from app.domain.usage.models import minute_of
from app.domain.usage.recorder import REFUSED_REVOKED
from app.lib.clock import SettableClock
from app.lib.db import transaction
from app.settings import Settings
from app.workers import job_context
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, sign_in
from tests.integration.test_api_keys_pages import HTMX, KEY_PATTERN, issue_key, keys_in_db, post_form

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]


def edit_form(api_key: ApiKey, **overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": api_key.name,
        "scopes": list(api_key.scopes),
        "allowed_origins": ", ".join(api_key.allowed_origins),
        "rate_limit_per_minute": str(api_key.rate_limit_per_minute),
        "expires_in_days": "keep",
        "expires_on": "",
    }
    form.update(overrides)
    return form


async def stored(app: Litestar, key_id: uuid.UUID) -> ApiKey:
    async with transaction(alchemy_of(app)) as session:
        row = await session.get(ApiKey, key_id)
        assert row is not None
        return row


async def set_columns(app: Litestar, key_id: uuid.UUID, **values: Any) -> None:
    async with transaction(alchemy_of(app)) as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))


async def test_the_key_page_shows_everything_about_the_key(
    admin_client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    key = await issue_key(app, studio, name="Widget")
    await set_columns(
        app, key.id, expires_at=clock() + timedelta(days=3, hours=1), allowed_origins=["https://a.example"]
    )
    table = (await admin_client.get("/settings/api-keys")).text
    assert f'<a href="/settings/api-keys/{key.id}">Widget</a>' in table
    assert ">Expires<" in table and 'class="expiry relative soon"' in table and ">in 3 days<" in table
    assert 'href="/help/api-keys"' in table

    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    assert '<h2 id="key-title">Widget</h2>' in page
    assert f"{key.prefix}..." in page
    assert "https://a.example" in page and "60 requests per minute" in page
    assert f"by {studio.admin.email}" in page
    assert "in 3 days" in page and "GMT" in page  # exact, in the organization's time zone (Europe/London)
    assert f'hx-get="/settings/api-keys/{key.id}/usage"' in page  # the usage view, loaded into the page
    # Over the range in the page's URL; loaded there, its range links keep the range in the key page's URL.
    ranged = (await admin_client.get(f"/settings/api-keys/{key.id}", params={"range": "7d"})).text
    assert f'hx-get="/settings/api-keys/{key.id}/usage?range=7d"' in ranged
    loaded = await admin_client.get(
        f"/settings/api-keys/{key.id}/usage",
        params={"range": "7d"},
        headers={**HTMX, "HX-Current-URL": f"http://testserver.local/settings/api-keys/{key.id}?range=7d"},
    )
    assert '<div id="key-usage-view">' in loaded.text and "<dt>Requests, last 7 days</dt>" in loaded.text
    assert f'hx-push-url="/settings/api-keys/{key.id}?range=24h"' in loaded.text
    swapped = await admin_client.get(
        f"/settings/api-keys/{key.id}/usage",
        params={"range": "24h"},
        headers={
            **HTMX,
            "HX-Target": "usage-view",
            "HX-Current-URL": f"http://testserver.local/settings/api-keys/{key.id}?range=7d",
        },
    )
    assert (
        "<html" not in swapped.text and f'hx-push-url="/settings/api-keys/{key.id}?range=90d"' in swapped.text
    )
    # Back to a range: a history restore gets the whole key page.
    restored = await admin_client.get(
        f"/settings/api-keys/{key.id}",
        params={"range": "24h"},
        headers={**HTMX, "HX-History-Restore-Request": "true"},
    )
    assert (
        "<html" in restored.text and f'hx-get="/settings/api-keys/{key.id}/usage?range=24h"' in restored.text
    )
    # The usage page of its own keeps its own address in its links.
    alone = (await admin_client.get(f"/settings/api-keys/{key.id}/usage")).text
    assert f'hx-push-url="/settings/api-keys/{key.id}/usage?range=7d"' in alone
    assert "Created API key" in page  # its audit entries
    for dialog in ("edit-key-dialog", "roll-key-dialog", f"revoke-{key.id}", f"delete-{key.id}"):
        assert f'<dialog id="{dialog}"' in page
        assert f'data-open-dialog="{dialog}"' in page
    # Links that work without JavaScript open the same dialogs on their own pages.
    for dialog, marker in (
        ("edit", 'id="edit-key-dialog" class="modal" aria-labelledby="edit-key-title" open'),
        ("roll", "data-return-url"),
    ):
        opened = await admin_client.get(f"/settings/api-keys/{key.id}/{dialog}")
        assert opened.status_code == 200 and marker in opened.text
    assert (await admin_client.get(f"/settings/api-keys/{key.id}/nope")).status_code in (404, 405)

    await set_columns(app, key.id, expires_at=clock() - timedelta(minutes=1))
    table = (await admin_client.get("/settings/api-keys")).text
    assert (
        '<span class="badge expired">Expired</span>' in table and 'class="expiry relative expired"' in table
    )
    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    assert 'id="key-status">Expired<' in page


async def test_edit_in_place_with_the_creation_rules_and_an_audit_entry(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    key = await issue_key(app, studio, name="Widget")
    url = f"/settings/api-keys/{key.id}/edit"
    # Bad input: the creation form's own messages beside the fields, nothing saved, what was typed kept.
    bad = await post_form(
        admin_client, url, edit_form(key, name="", rate_limit_per_minute="0", allowed_origins="example.com")
    )
    assert bad.status_code == 422
    assert "Name is required." in bad.text
    assert "Rate limit must be a whole number between 1 and 1000 requests per minute." in bad.text
    assert "has no scheme" in bad.text and 'value="example.com"' in bad.text
    assert (await stored(app, key.id)).name == "Widget"
    bad_date = await post_form(
        admin_client, url, edit_form(key, expires_in_days="custom", expires_on="2001-01-01")
    )
    assert bad_date.status_code == 422 and "The expiry date must be after today." in bad_date.text

    saved = await post_form(
        admin_client, url, edit_form(key, name="Shop widget", scopes=["read", "write"], expires_in_days="90")
    )
    assert saved.status_code == 200, saved.text
    assert saved.headers["hx-retarget"] == "#key-page" and 'id="key-page"' in saved.text
    assert "Shop widget" in saved.text and "Edited API key" in saved.text
    row = await stored(app, key.id)
    assert row.name == "Shop widget" and row.scopes == ["read", "write"] and row.expires_at is not None

    # Without JavaScript: a plain post, then back to the key page; "never" removes the expiry.
    plain = await post_form(admin_client, url, edit_form(row, expires_in_days="never"), htmx=False)
    assert plain.status_code == 303 and plain.headers["location"] == f"/settings/api-keys/{key.id}"
    assert (await stored(app, key.id)).expires_at is None
    plain_bad = await post_form(admin_client, url, edit_form(row, scopes=[]), htmx=False)
    assert plain_bad.status_code == 422 and "Select at least one scope" in plain_bad.text
    assert 'aria-labelledby="edit-key-title" open' in plain_bad.text

    audit = (await admin_client.get("/settings/audit-log")).text
    assert "Edited API key" in audit and 'name: "Widget" → "Shop widget"' in audit


async def test_a_custom_expiry_date_at_creation_ends_that_day_in_the_organization_time_zone(
    admin_client: Client, app: Litestar, clock: SettableClock
) -> None:
    day = (clock() + timedelta(days=40)).date()
    form = {
        "name": "Dated",
        "scopes": ["read"],
        "rate_limit_per_minute": "60",
        "expires_in_days": "custom",
        "expires_on": day.isoformat(),
        "allowed_origins": "",
    }
    response = await post_form(admin_client, "/settings/api-keys", form)
    assert response.status_code == 201, response.text
    [row] = await keys_in_db(app)
    assert row.expires_at == rules.end_of_day(day, "Europe/London")
    missing = await post_form(
        admin_client, "/settings/api-keys", {**form, "name": "Undated", "expires_on": ""}
    )
    assert missing.status_code == 422 and "Enter the expiry date as YYYY-MM-DD" in missing.text


async def test_roll_shows_the_new_secret_once_and_the_previous_one_until_its_end(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    key = await issue_key(app, studio, name="Widget")
    url = f"/settings/api-keys/{key.id}/roll"
    refused = await post_form(admin_client, url, {"grace": "3d"})
    assert refused.status_code == 422 and "Choose how long" in refused.text
    assert (await stored(app, key.id)).previous_key_hash is None

    rolled = await post_form(admin_client, url, {"grace": "24h"})
    assert rolled.status_code == 201, rolled.text
    [secret] = set(KEY_PATTERN.findall(rolled.text))  # in the key's field and the ready curl line
    assert f'Bearer {secret}"' in rolled.text
    row = await stored(app, key.id)
    assert row.key_hash == rules.hash_key(secret) and row.previous_prefix == key.prefix
    assert "New secret for “Widget”" in rolled.text
    assert 'hx-swap-oob="outerHTML"' in rolled.text and f"{row.prefix}..." in rolled.text
    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    assert secret not in page
    assert f"Previous secret <code>{key.prefix}...</code> works until" in page
    table = (await admin_client.get("/settings/api-keys")).text
    assert f"<code>{row.prefix}...</code>" in table and f"{key.prefix}..." not in table

    # The dialog says that rolling again ends the previous secret at once; and it does.
    roll_form = (await admin_client.get(url, headers=HTMX)).text
    assert "Rolling again ends it at once" in roll_form
    again = await post_form(admin_client, url, {"grace": "0"}, htmx=False)  # a plain form
    assert again.status_code == 201
    assert f"The older previous secret <code>{key.prefix}...</code> stopped working now" in again.text
    assert "has stopped working" in again.text  # grace "now"
    assert len(set(KEY_PATTERN.findall(again.text))) == 1
    audit = (await admin_client.get("/settings/audit-log")).text
    assert audit.count("Rolled API key") == 2


async def test_a_revoked_key_cannot_be_rolled_from_the_page(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    key = await issue_key(app, studio)
    await post_form(
        admin_client, f"/settings/api-keys/{key.id}/revoke", {"return_to": f"/settings/api-keys/{key.id}"}
    )
    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    assert 'data-open-dialog="roll-key-dialog"' not in page
    refused = await post_form(admin_client, f"/settings/api-keys/{key.id}/roll", {"grace": "1h"})
    assert refused.status_code == 422 and "A revoked key cannot be rolled" in refused.text


async def test_revoke_from_the_key_page_stays_on_it(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    key = await issue_key(app, studio)
    page_url = f"/settings/api-keys/{key.id}"
    swapped = await post_form(admin_client, f"{page_url}/revoke", {"return_to": page_url})
    assert swapped.status_code == 200 and 'id="key-page"' in swapped.text and "Revoked" in swapped.text
    plain = await post_form(admin_client, f"{page_url}/revoke", {"return_to": page_url}, htmx=False)
    assert plain.headers["location"] == page_url
    elsewhere = await post_form(
        admin_client, f"{page_url}/revoke", {"return_to": "https://evil.example"}, htmx=False
    )
    assert elsewhere.headers["location"] == "/settings/api-keys"


async def test_delete_asks_to_type_the_name(admin_client: Client, app: Litestar, studio: Staff) -> None:
    key = await issue_key(app, studio, name="Widget")
    url = f"/settings/api-keys/{key.id}/delete"
    table = (await admin_client.get("/settings/api-keys")).text
    dialog = re.search(rf'<dialog id="delete-{key.id}".*?</dialog>', table, re.S)
    assert (
        dialog
        and 'name="confirm_name"' in dialog.group(0)
        and "Type <strong>Widget</strong> to confirm" in dialog.group(0)
    )
    for typed in ("", "widget", "Widge"):
        wrong = await post_form(admin_client, url, {"confirm_name": typed})
        assert wrong.status_code == 422
        assert wrong.headers["hx-retarget"] == f"#delete-form-{key.id}"
        assert "Type the key&#39;s name, Widget, to delete it." in wrong.text
    plain_wrong = await post_form(admin_client, url, {"confirm_name": "nope"}, htmx=False)
    assert (
        plain_wrong.status_code == 422
        and f'<dialog id="delete-{key.id}" class="modal confirm" aria-labelledby="delete-title-{key.id}" open'
        in plain_wrong.text
    )
    assert len(await keys_in_db(app)) == 1
    # From the key page: gone, and back to the table.
    deleted = await post_form(
        admin_client, url, {"confirm_name": "Widget", "return_to": f"/settings/api-keys/{key.id}"}
    )
    assert deleted.status_code == 200 and deleted.headers["hx-redirect"] == "/settings/api-keys"
    assert await keys_in_db(app) == []


async def test_filters_search_and_sort_are_in_the_url(
    admin_client: Client, app: Litestar, studio: Staff, clock: SettableClock
) -> None:
    await issue_key(app, studio, name="Alpha shop")
    beta = await issue_key(app, studio, name="beta server")
    gamma = await issue_key(app, studio, name="Gamma")
    await set_columns(app, beta.id, revoked_at=clock(), last_used_at=clock() - timedelta(days=1))
    await set_columns(app, gamma.id, expires_at=clock() - timedelta(days=1), last_used_at=clock())

    def names(html: str) -> list[str]:
        return re.findall(r'<td class="name"><a href="[^"]+">([^<]+)</a>', html)

    async def table(query: str, htmx: bool = False) -> str:
        headers = {**HTMX, "HX-Target": "api-keys-body"} if htmx else {}
        response = await admin_client.get(f"/settings/api-keys{query}", headers=headers)
        assert response.status_code == 200
        return response.text

    assert names(await table("")) == ["Gamma", "beta server", "Alpha shop"]  # newest first
    assert names(await table("?status=active")) == ["Alpha shop"]
    assert names(await table("?status=revoked")) == ["beta server"]
    assert names(await table("?status=expired")) == ["Gamma"]
    assert names(await table("?q=SHOP")) == ["Alpha shop"]
    assert names(await table(f"?q={beta.prefix}...")) == ["beta server"]
    assert names(await table("?sort=name")) == ["Alpha shop", "beta server", "Gamma"]
    assert names(await table("?sort=last_used")) == ["Gamma", "beta server", "Alpha shop"]
    # The form shows what the URL says; unknown values fall back to the defaults.
    page = await table("?status=revoked&q=be&sort=name")
    assert (
        '<option value="revoked" selected>' in page
        and 'value="be"' in page
        and '<option value="name" selected>' in page
    )
    assert names(await table("?status=bogus&sort=bogus")) == ["Gamma", "beta server", "Alpha shop"]
    # HTMX gets only the table body; a history restore (Back, Forward) gets the whole page.
    partial = await table("?status=active", htmx=True)
    assert "<html" not in partial and names(partial) == ["Alpha shop"]
    restored = await admin_client.get(
        "/settings/api-keys?status=active",
        headers={**HTMX, "HX-Target": "api-keys-body", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restored.text and names(restored.text) == ["Alpha shop"]
    assert "No keys match." in await table("?q=nothing-like-it")


async def test_who_still_calls_a_dead_key(
    admin_client: Client, app: Litestar, settings: Settings, studio: Staff, clock: SettableClock
) -> None:
    key = await issue_key(app, studio)
    await set_columns(app, key.id, revoked_at=clock())
    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    assert "No refused requests in the last 7 days" in page
    now = clock()
    events = [
        (
            key.id.hex,
            (now - timedelta(minutes=minutes_ago)).timestamp(),
            "GET",
            "/api/v1/services",
            REFUSED_REVOKED,
            1,
        )
        for minutes_ago, count in ((60, 4), (5, 3), (8 * 24 * 60, 50))
        for _ in range(count)
    ]
    await fold_usage(job_context(settings, alchemy_of(app)), batch_id="refused", events=events)  # type: ignore[arg-type]
    page = (await admin_client.get(f"/settings/api-keys/{key.id}")).text
    last = minute_of(now - timedelta(minutes=5)).astimezone(ZoneInfo("Europe/London"))  # the studio's zone
    assert "Still being called: 7 refused requests in the last 7 days" in page
    assert f"last at {last:%a} {last.day} {last:%b %Y, %H:%M}" in page
    # In the usage view the refusals are a series of their own (the 50 of 8 days ago are before its 7 days).
    usage = (await admin_client.get(f"/settings/api-keys/{key.id}/usage", params={"range": "7d"})).text
    assert '<dd id="total-requests">7</dd>' in usage
    assert "<dt>Refused: key revoked</dt><dd>7</dd>" in usage and "<dt>Success</dt><dd>0</dd>" in usage
    assert '<span class="swatch refused_revoked"></span>Refused: key revoked' in usage
    assert "<dt>Last Used</dt><dd>Never</dd>" in usage  # a refused request is not a use of the key


async def test_the_help_page_is_linked_and_matches_the_screens(admin_client: Client) -> None:
    help_page = await admin_client.get("/help/api-keys")
    assert help_page.status_code == 200
    text = help_page.text
    for promise in (
        "Roll key",
        "Edit",
        "Expired",
        "Expires",
        "Sunset",
        "to confirm",
        "Delete key",
        "/api/v1/key",
    ):
        assert promise in text, promise
    assert "you may need to delete the key and create a new one" not in text
    screens = (await admin_client.get("/settings/api-keys")).text
    for label in ("Create API Key", "Search", "Status", "Sort by"):
        assert label in screens and label in text, label


async def test_the_help_page_is_for_every_signed_in_staff_member(client: Client, studio: Staff) -> None:
    signed_out = await client.get("/help/api-keys", follow_redirects=False)
    assert signed_out.status_code in (302, 303, 401) and "Roll a key" not in signed_out.text
    await sign_in(client, studio.staff)
    page = await client.get("/help/api-keys")
    assert page.status_code == 200 and "Roll a key" in page.text
