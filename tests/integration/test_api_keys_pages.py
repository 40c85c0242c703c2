"""Settings → DEVELOPER → API Keys, as the help page describes it: create, see once, revoke, delete."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from advanced_alchemy.base import orm_registry
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import Actor
from app.lib.db import transaction
from app.settings import Settings
from app.web.formatting import time_tooltip
from tests.api_helpers import recorded_sql
from tests.fixtures.app import alchemy_of, dispose_engines
from tests.fixtures.staff import Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
HTMX = {"HX-Request": "true"}
KEY_PATTERN = re.compile(r"qv_pk_[0-9A-Za-z]{38}")


def key_form(**overrides: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": "Website Booking Widget",
        "scopes": ["read", "write"],
        "allowed_origins": "https://example.com, https://Booking.Example.com",
        "rate_limit_per_minute": "60",
        "expires_in_days": "never",
    }
    form.update(overrides)
    return form


async def post_form(client: Client, url: str, form: dict[str, Any] | None = None, htmx: bool = True) -> Any:
    data = {**(form or {}), "_csrf_token": csrf_token(client)}
    return await client.post(url, data=data, headers=HTMX if htmx else {}, follow_redirects=False)


async def create_key(client: Client, **overrides: Any) -> str:
    response = await post_form(client, "/settings/api-keys", key_form(**overrides))
    assert response.status_code == 201, response.text
    match = KEY_PATTERN.search(response.text)
    assert match, "the creation response shows the full key"
    return match.group(0)


async def keys_in_db(app: Litestar) -> list[ApiKey]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())


async def issue_key(app: Litestar, staff: Staff, name: str = "Server") -> ApiKey:
    async with transaction(alchemy_of(app)) as session:
        request = rules.validate_key_request(
            name=name, scopes=["read"], origins="", rate_limit=None, expires_in_days=None
        )
        issued = await ApiKeyService(session=session).issue(
            staff.organization.id,
            request,
            actor=Actor(label=staff.admin.email, user_id=staff.admin.id),
            now=datetime.now(UTC),
        )
    return issued.api_key


async def test_settings_navigation_leads_to_api_keys(admin_client: Client) -> None:
    settings_page = await admin_client.get("/settings")
    assert settings_page.status_code == 200
    assert str(settings_page.url).endswith("/settings/api-keys")
    html = settings_page.text
    assert ">Settings</a>" in html
    assert "<h2>DEVELOPER</h2>" in html
    assert ">API Keys</a>" in html


async def test_empty_state_invites_creating_the_first_key(admin_client: Client) -> None:
    page = await admin_client.get("/settings/api-keys")
    assert "No API keys yet." in page.text
    assert "Create API Key" in page.text
    for column in ("Name", "Key", "Scopes", "Status", "Last Used", "Created", "Actions"):
        assert f">{column}<" in page.text


async def test_create_shows_the_key_once_and_adds_the_row(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    response = await post_form(admin_client, "/settings/api-keys", key_form(expires_in_days="30"))
    assert response.status_code == 201, response.text
    secret = KEY_PATTERN.search(response.text)
    assert secret is not None
    secret_key = secret.group(0)
    assert rules.is_well_formed(secret_key)
    assert 'data-copy="new-key-value"' in response.text
    assert "only time it is shown" in response.text
    # The new row arrives out of band, so the table updates without a reload.
    assert 'hx-swap-oob="innerHTML"' in response.text
    assert f"{rules.display_prefix(secret_key)}..." in response.text
    assert ">Active<" in response.text
    assert ">Never<" in response.text
    assert json.loads(response.headers["HX-Trigger"])["toast"]["message"].startswith("API key")

    [stored] = await keys_in_db(app)
    assert stored.key_hash == rules.hash_key(secret_key)
    assert stored.prefix == rules.display_prefix(secret_key)
    assert stored.name == "Website Booking Widget"
    assert stored.scopes == ["read", "write"]
    assert stored.allowed_origins == ["https://example.com", "https://booking.example.com"]
    assert stored.rate_limit_per_minute == 60
    assert stored.created_by_id == studio.admin.id
    assert stored.organization_id == studio.organization.id
    assert stored.expires_at is not None
    assert abs(stored.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert stored.revoked_at is None and stored.last_used_at is None


async def test_create_without_javascript_renders_the_page_with_the_key(
    admin_client: Client, app: Litestar
) -> None:
    response = await post_form(admin_client, "/settings/api-keys", key_form(), htmx=False)
    assert response.status_code == 201, response.text
    assert "<html" in response.text
    assert KEY_PATTERN.search(response.text)
    assert 'id="create-key-dialog"' in response.text and "open>" in response.text
    assert len(await keys_in_db(app)) == 1


async def test_defaults_are_read_scope_and_sixty_per_minute(admin_client: Client, app: Litestar) -> None:
    new_form = await admin_client.get("/settings/api-keys/new", headers=HTMX)
    assert 'name="rate_limit_per_minute"' in new_form.text and 'value="60"' in new_form.text
    await create_key(admin_client, scopes=["read"], rate_limit_per_minute="", allowed_origins="")
    [stored] = await keys_in_db(app)
    assert stored.rate_limit_per_minute == 60
    assert stored.allowed_origins == []
    assert stored.expires_at is None


async def test_after_closing_the_dialog_the_key_is_nowhere(
    admin_client: Client, app: Litestar, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_key = await create_key(admin_client)

    # Closing the dialog fetches a blank form; every later page and fragment shows only the prefix.
    later = [
        await admin_client.get("/settings/api-keys/new", headers=HTMX),
        await admin_client.get("/settings/api-keys"),
        await admin_client.get("/settings/api-keys/new"),
    ]
    [stored] = await keys_in_db(app)
    later.append(await post_form(admin_client, f"/settings/api-keys/{stored.id}/revoke"))
    for response in later:
        assert secret_key not in response.text
        assert secret_key[6:] not in response.text
    assert f"{stored.prefix}..." in later[1].text

    async with transaction(alchemy_of(app)) as session:
        for table in orm_registry.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                assert secret_key[6:] not in repr(tuple(row)), table.name
    if settings.is_sqlite:
        await dispose_engines(app)  # the last connection to close checkpoints the WAL into the file
        database = Path(settings.database_url.split("///", 1)[1])
        for path in database.parent.glob(database.name + "*"):
            assert secret_key[6:].encode() not in path.read_bytes(), path
    # The capture does see the app's own loggers, so its silence about the key means something.
    logging.getLogger("app.domain.api_keys.services").warning("capture probe")
    assert "capture probe" in caplog.text
    assert secret_key not in caplog.text
    assert secret_key[6:] not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "  "}, "name", "Name is required."),
        ({"name": "x" * 101}, "name", "Name must be at most 100 characters."),
        ({"scopes": []}, "scopes", "Select at least one scope: Read or Write."),
        ({"allowed_origins": "https://example.com/booking"}, "allowed_origins", "has a path"),
        ({"allowed_origins": "https://*.example.com"}, "allowed_origins", "wildcard"),
        ({"allowed_origins": "ftp://example.com"}, "allowed_origins", "ftp"),
        ({"allowed_origins": "example.com"}, "allowed_origins", "https://"),
        ({"allowed_origins": "https://example.com?x=1"}, "allowed_origins", "query"),
        ({"rate_limit_per_minute": "0"}, "rate_limit_per_minute", "between 1 and 1000"),
        ({"rate_limit_per_minute": "1001"}, "rate_limit_per_minute", "between 1 and 1000"),
        ({"rate_limit_per_minute": "ten"}, "rate_limit_per_minute", "whole number"),
        ({"expires_in_days": "7"}, "expires_in_days", "Never, 30, 90 or 365 days"),
    ],
)
async def test_invalid_input_is_explained_beside_the_field_and_saves_nothing(
    admin_client: Client, app: Litestar, overrides: dict[str, Any], field: str, message: str
) -> None:
    response = await post_form(admin_client, "/settings/api-keys", key_form(**overrides))
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', response.text)
    assert error is not None, response.text
    assert message.lower() in error.group(1).lower()
    assert f'aria-describedby="{field}-error"' in response.text
    assert not KEY_PATTERN.search(response.text)
    assert await keys_in_db(app) == []


async def test_invalid_form_keeps_what_was_typed(admin_client: Client) -> None:
    response = await post_form(
        admin_client,
        "/settings/api-keys",
        key_form(name="", allowed_origins="https://ok.example, bad", rate_limit_per_minute="5000"),
    )
    assert response.status_code == 422
    assert 'value="https://ok.example, bad"' in response.text
    assert 'value="5000"' in response.text
    assert response.text.count('class="field-error"') == 3


async def test_a_file_sent_as_a_text_field_is_an_empty_field_not_an_error(
    admin_client: Client, app: Litestar
) -> None:
    form = key_form()
    form.pop("name")
    response = await admin_client.post(
        "/settings/api-keys",
        data={**form, "_csrf_token": csrf_token(admin_client)},
        files={"name": ("name.txt", b"Widget", "text/plain")},
        headers=HTMX,
    )
    assert response.status_code == 422
    assert "Name is required." in response.text
    assert await keys_in_db(app) == []


async def test_invalid_input_without_javascript_renders_the_page(admin_client: Client, app: Litestar) -> None:
    response = await post_form(admin_client, "/settings/api-keys", key_form(name=""), htmx=False)
    assert response.status_code == 422
    assert "<html" in response.text and "Name is required." in response.text
    assert await keys_in_db(app) == []


async def test_revoke_shows_the_badge_and_is_harmless_twice(admin_client: Client, app: Litestar) -> None:
    await create_key(admin_client)
    [stored] = await keys_in_db(app)
    first = await post_form(admin_client, f"/settings/api-keys/{stored.id}/revoke")
    assert first.status_code == 200
    assert f'id="key-{stored.id}"' in first.text
    assert ">Revoked<" in first.text
    assert 'aria-label="Revoke"' not in first.text
    assert 'aria-label="Delete"' in first.text
    [revoked] = await keys_in_db(app)
    assert revoked.revoked_at is not None

    again = await post_form(admin_client, f"/settings/api-keys/{stored.id}/revoke")
    assert again.status_code == 200
    [still] = await keys_in_db(app)
    assert still.revoked_at == revoked.revoked_at
    page = await admin_client.get("/settings/api-keys")
    assert ">Revoked<" in page.text


async def test_revoke_and_delete_work_without_javascript(admin_client: Client, app: Litestar) -> None:
    await create_key(admin_client)
    [stored] = await keys_in_db(app)
    revoked = await post_form(admin_client, f"/settings/api-keys/{stored.id}/revoke", htmx=False)
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/settings/api-keys"
    deleted = await post_form(
        admin_client, f"/settings/api-keys/{stored.id}/delete", {"confirm_name": stored.name}, htmx=False
    )
    assert deleted.status_code == 303
    assert await keys_in_db(app) == []


async def test_each_action_asks_for_confirmation_in_a_dialog(admin_client: Client, app: Litestar) -> None:
    await create_key(admin_client)
    [stored] = await keys_in_db(app)
    page = (await admin_client.get("/settings/api-keys")).text
    for action in ("revoke", "delete"):
        assert f'data-open-dialog="{action}-{stored.id}"' in page
        dialog = re.search(rf'<dialog id="{action}-{stored.id}".*?</dialog>', page, re.S)
        assert dialog is not None
        assert f'hx-post="/settings/api-keys/{stored.id}/{action}"' in dialog.group(0)
        assert "Cancel" in dialog.group(0)
    assert 'aria-label="Revoke"' in page and 'aria-label="Delete"' in page


async def test_delete_removes_the_row_for_good(admin_client: Client, app: Litestar) -> None:
    await create_key(admin_client, name="First")
    await create_key(admin_client, name="Second")
    first, second = await keys_in_db(app)
    response = await post_form(
        admin_client, f"/settings/api-keys/{first.id}/delete", {"confirm_name": "First"}
    )
    assert response.status_code == 200
    assert f'id="key-{first.id}"' not in response.text
    assert f'id="key-{second.id}"' in response.text
    assert [key.id for key in await keys_in_db(app)] == [second.id]

    last = await post_form(admin_client, f"/settings/api-keys/{second.id}/delete", {"confirm_name": "Second"})
    assert "No API keys yet." in last.text
    assert await keys_in_db(app) == []
    gone = await post_form(admin_client, f"/settings/api-keys/{second.id}/delete", {"confirm_name": "Second"})
    assert gone.status_code == 404


@pytest.mark.parametrize("action", ["create", "revoke", "delete"])
async def test_state_changes_are_rejected_without_a_csrf_token(
    admin_client: Client, app: Litestar, studio: Staff, action: str
) -> None:
    existing = await issue_key(app, studio)
    url = "/settings/api-keys" if action == "create" else f"/settings/api-keys/{existing.id}/{action}"
    response = await admin_client.post(url, data=key_form(), headers=HTMX)
    assert response.status_code == 403
    [unchanged] = await keys_in_db(app)
    assert unchanged.id == existing.id and unchanged.revoked_at is None
    forged = await admin_client.post(url, data=key_form(), headers={**HTMX, "x-csrftoken": "forged"})
    assert forged.status_code == 403
    assert len(await keys_in_db(app)) == 1


async def test_staff_members_get_403(client: Client, app: Litestar, studio: Staff) -> None:
    existing = await issue_key(app, studio)
    await sign_in(client, studio.staff)
    page = await client.get("/settings/api-keys")
    assert page.status_code == 403
    assert "Only admins can manage API keys." in page.text
    for url in (
        "/settings/api-keys",
        f"/settings/api-keys/{existing.id}/revoke",
        f"/settings/api-keys/{existing.id}/delete",
    ):
        response = await post_form(client, url, key_form())
        assert response.status_code == 403
    [unchanged] = await keys_in_db(app)
    assert unchanged.revoked_at is None


async def test_another_organizations_keys_answer_404(
    admin_client: Client, app: Litestar, other_studio: Staff
) -> None:
    theirs = await issue_key(app, other_studio, name="Their key")
    page = await admin_client.get("/settings/api-keys")
    assert "Their key" not in page.text
    for action in ("revoke", "delete"):
        response = await post_form(admin_client, f"/settings/api-keys/{theirs.id}/{action}")
        assert response.status_code == 404
        full = await post_form(admin_client, f"/settings/api-keys/{theirs.id}/{action}", htmx=False)
        assert full.status_code == 404 and "Not found" in full.text
    unknown = await post_form(admin_client, f"/settings/api-keys/{uuid.uuid4()}/revoke")
    assert unknown.status_code == 404
    [unchanged] = await keys_in_db(app)
    assert unchanged.revoked_at is None


async def test_status_and_last_used_columns(admin_client: Client, app: Litestar, studio: Staff) -> None:
    used = await issue_key(app, studio, name="Used")
    expired = await issue_key(app, studio, name="Old")
    two_days_ago = datetime.now(UTC) - timedelta(days=2, minutes=5)
    async with transaction(alchemy_of(app)) as session:
        await session.execute(update(ApiKey).where(ApiKey.id == used.id).values(last_used_at=two_days_ago))
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == expired.id)
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )
    page = (await admin_client.get("/settings/api-keys")).text
    used_row = re.search(rf'<tr id="key-{used.id}">.*?</tr>', page, re.S)
    expired_row = re.search(rf'<tr id="key-{expired.id}">.*?</tr>', page, re.S)
    assert used_row is not None and expired_row is not None
    assert ">2 days ago</time>" in used_row.group(0)
    # The studio's own clock in the tooltip, UTC beside it.
    assert f'title="{time_tooltip(two_days_ago, ZoneInfo(studio.organization.time_zone))}"' in used_row.group(
        0
    )
    assert two_days_ago.strftime("(%Y-%m-%d %H:%M:%S UTC)") in used_row.group(0)
    assert ">Active<" in used_row.group(0)
    assert ">Expired<" in expired_row.group(0)
    assert ">Never<" in expired_row.group(0)


async def test_keys_are_listed_newest_first(admin_client: Client, app: Litestar) -> None:
    for name in ("Alpha", "Beta", "Gamma"):
        await create_key(admin_client, name=name)
    page = (await admin_client.get("/settings/api-keys")).text
    assert page.index("Gamma") < page.index("Beta") < page.index("Alpha")
    async with transaction(alchemy_of(app)) as session:
        assert await session.scalar(select(func.count()).select_from(ApiKey)) == 3


async def test_reading_keys_joins_no_other_table(admin_client: Client, app: Litestar, studio: Staff) -> None:
    await create_key(admin_client, name="Widget")
    [key_id] = [row.id for row in await keys_in_db(app)]
    with recorded_sql(app) as statements:
        assert (await admin_client.get("/settings/api-keys")).status_code == 200
        assert (await admin_client.get(f"/settings/api-keys/{key_id}/usage")).status_code == 200
    key_queries = [statement for statement in statements if "FROM api_keys" in statement]
    assert key_queries, "the pages read the keys"
    # Nothing on these pages shows who created a key: no query loads the creator (and their organization).
    assert not [statement for statement in key_queries if "JOIN" in statement], key_queries
