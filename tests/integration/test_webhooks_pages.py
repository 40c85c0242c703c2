"""Settings → Webhooks: admins add endpoints (secret shown once), roll the secret, send a test event, disable,
remove, and read the delivery log."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.audit.models import AuditEvent
from app.domain.webhooks import rules
from app.domain.webhooks.models import WebhookEndpoint, WebhookEvent
from app.lib.clock import SettableClock
from app.lib.db import transaction
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token, sign_in
from tests.integration.test_api_keys_pages import issue_key
from tests.integration.test_key_page import edit_form
from tests.webhook_helpers import deliverer, receiver

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
PAGE = "/settings/webhooks"
SECRET = re.compile(r'value="(whsec_[A-Za-z0-9_-]+)"')


async def post_form(client: Client, url: str, data: dict[str, Any] | None = None, htmx: bool = False) -> Any:
    headers = {"HX-Request": "true"} if htmx else {}
    return await client.post(
        url, data={**(data or {}), "_csrf_token": csrf_token(client)}, headers=headers, follow_redirects=False
    )


async def endpoints(app: Litestar) -> list[WebhookEndpoint]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(WebhookEndpoint))).all())


async def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(
    admin_client: Client, app: Litestar, clock: SettableClock
) -> None:
    page = await admin_client.get(PAGE)
    assert page.status_code == 200 and ">Webhooks</a>" in page.text
    with receiver() as hook:
        added = await post_form(
            admin_client,
            PAGE,
            {"url": hook.url, "events": ["reservation.created", "api_key.revoked"]},
            htmx=True,
        )
        assert added.status_code == 201, added.text
        secret = SECRET.search(added.text)
        assert secret is not None
        (endpoint,) = await endpoints(app)
        assert endpoint.url == hook.url and endpoint.events == ["reservation.created", "api_key.revoked"]
        assert secret.group(1) not in json.dumps([endpoint.secret_salt, endpoint.url])
        later = await admin_client.get(PAGE)
        assert hook.url in later.text and secret.group(1) not in later.text and "whsec_" not in later.text

        tested = await post_form(admin_client, f"{PAGE}/{endpoint.id}/test")
        assert tested.status_code == 200 and "Test event" in tested.text
        async with httpx.AsyncClient() as http_client:
            assert await deliverer(app, clock, http_client).run() == 1
    (received,) = hook.received
    assert json.loads(received.body)["type"] == "test"
    assert rules.verify(
        secret.group(1), received.headers["quickvisit-signature"], received.body, int(clock().timestamp())
    )
    log = await admin_client.get(f"{PAGE}/{endpoint.id}")
    assert "<code>test</code>" in log.text and "<td>200</td>" in log.text and "<td>1</td>" in log.text


async def test_roll_disable_enable_and_remove(admin_client: Client, app: Litestar, studio: Staff) -> None:
    await admin_client.get(PAGE)
    added = await post_form(
        admin_client, PAGE, {"url": "http://127.0.0.1:9/hook", "events": ["reservation.created"]}
    )
    first = SECRET.search(added.text)
    (endpoint,) = await endpoints(app)
    rolled = await post_form(admin_client, f"{PAGE}/{endpoint.id}/roll")
    second = SECRET.search(rolled.text)
    assert first and second and first.group(1) != second.group(1)

    disabled = await post_form(admin_client, f"{PAGE}/{endpoint.id}/toggle")
    assert "Endpoint disabled" in disabled.text
    assert not (await endpoints(app))[0].enabled
    refused = await post_form(admin_client, f"{PAGE}/{endpoint.id}/test")
    assert "Enable the endpoint" in refused.text
    await post_form(admin_client, f"{PAGE}/{endpoint.id}/toggle")
    assert (await endpoints(app))[0].enabled

    # Remove asks first: the page's button opens a dialog that holds the only form that removes, and
    # without JavaScript its link opens the page with that question open.
    page = (await admin_client.get(f"{PAGE}/{endpoint.id}")).text
    removing = f'action="{PAGE}/{endpoint.id}/delete"'
    dialog = page.index('<dialog id="remove-endpoint-dialog"')
    assert page.count(removing) == 1 and page.index(removing) > dialog
    assert f'href="{PAGE}/{endpoint.id}?confirm=remove" data-open-dialog="remove-endpoint-dialog"' in page
    assert "open>" not in page[dialog : page.index(">", dialog) + 1]
    question = await admin_client.get(f"{PAGE}/{endpoint.id}?confirm=remove")
    assert question.status_code == 200 and "Remove this endpoint?" in question.text
    assert '<dialog id="remove-endpoint-dialog"' in question.text
    assert 'aria-labelledby="remove-endpoint-title" open>' in question.text
    assert len(await endpoints(app)) == 1  # asking removes nothing

    removed = await post_form(admin_client, f"{PAGE}/{endpoint.id}/delete")
    assert removed.status_code == 303 and removed.headers["location"] == PAGE
    assert await endpoints(app) == []
    async with transaction(alchemy_of(app)) as session:
        actions = [event.action for event in (await session.scalars(select(AuditEvent))).all()]
    for action in ("created", "secret_rolled", "disabled", "enabled", "deleted"):
        assert f"webhook_endpoint.{action}" in actions


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"url": "ftp://example.com/", "events": ["reservation.created"]}, "Enter a URL like"),
        ({"url": "http://example.com/hook", "events": ["reservation.created"]}, "only for loopback"),
        ({"url": "https://example.com/hook"}, "Choose one or more"),
        ({"url": "https://example.com/hook", "events": ["nope"]}, "Choose one or more"),
    ],
)
async def test_bad_endpoints_are_explained(
    admin_client: Client, app: Litestar, form: dict[str, Any], message: str
) -> None:
    await admin_client.get(PAGE)
    response = await post_form(admin_client, PAGE, form)
    assert response.status_code == 422 and message in response.text
    assert await endpoints(app) == []


async def test_only_admins_and_only_their_organization(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    await sign_in(client, other_studio.admin)
    await client.get(PAGE)
    await post_form(client, PAGE, {"url": "http://127.0.0.1:9/hook", "events": ["reservation.created"]})
    (theirs,) = await endpoints(app)
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, studio.admin)
    assert (await client.get(f"{PAGE}/{theirs.id}")).status_code == 404
    assert "127.0.0.1:9" not in (await client.get(PAGE)).text
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, studio.staff)
    assert (await client.get(PAGE)).status_code == 403


async def test_revoking_a_key_from_either_page_sends_api_key_revoked_once_and_edit_or_roll_send_nothing(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    added = await post_form(
        admin_client, PAGE, {"url": "http://127.0.0.1:9/hook", "events": list(rules.EVENT_TYPES)}
    )
    assert added.status_code == 201, added.text
    edited, from_table = (
        await issue_key(app, studio, name="Edited"),
        await issue_key(app, studio, name="Table"),
    )
    key_url = f"/settings/api-keys/{edited.id}"
    saved = await post_form(
        admin_client, f"{key_url}/edit", {**edit_form(edited), "name": "Edited again"}, htmx=True
    )
    assert saved.status_code == 200, saved.text
    rolled = await post_form(admin_client, f"{key_url}/roll", {"grace": "1h"}, htmx=True)
    assert rolled.status_code == 201, rolled.text
    assert await outbox_types(app) == []  # rolling and editing are no webhook events

    for _ in range(2):  # the key page, twice: revoked once
        assert (await post_form(admin_client, f"{key_url}/revoke", {"return_to": key_url})).status_code == 303
    table = f"/settings/api-keys/{from_table.id}/revoke"
    assert (await post_form(admin_client, table, htmx=True)).status_code == 200  # the table's row, by HTMX
    async with transaction(alchemy_of(app)) as session:
        events = list((await session.scalars(select(WebhookEvent))).all())
    assert sorted(event.type for event in events) == ["api_key.revoked", "api_key.revoked"]
    assert sorted(json.loads(event.body)["data"]["id"] for event in events) == sorted(
        [str(edited.id), str(from_table.id)]
    )


async def outbox_types(app: Litestar) -> list[str]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(WebhookEvent.type))).all())
