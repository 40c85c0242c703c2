"""The audit log: key created, revoked and deleted, with who, when and from where; it outlives the key."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.audit.models import AuditEvent
from app.lib.db import transaction
from tests.api_helpers import key_id_of, make_key
from tests.fixtures.app import alchemy_of
from tests.fixtures.staff import Staff, csrf_token, sign_in

pytestmark = pytest.mark.anyio
Client = AsyncTestClient[Litestar]
HTMX = {"HX-Request": "true"}


async def events(app: Litestar) -> list[AuditEvent]:
    async with transaction(alchemy_of(app)) as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.created_at))).all())


async def test_key_lifecycle_is_recorded_and_outlives_the_key(
    admin_client: Client, app: Litestar, studio: Staff
) -> None:
    token = {"_csrf_token": csrf_token(admin_client)}
    created = await admin_client.post(
        "/settings/api-keys", data={"name": "Widget", "scopes": ["read"], **token}, headers=HTMX
    )
    assert created.status_code == 201
    key = re.search(r"qv_pk_[0-9A-Za-z]{38}", created.text)
    assert key is not None
    key_id = await key_id_of(app, key.group(0))
    for _ in range(2):  # revoking twice records one revocation
        await admin_client.post(f"/settings/api-keys/{key_id}/revoke", data=token, headers=HTMX)
    await admin_client.post(
        f"/settings/api-keys/{key_id}/delete", data={**token, "confirm_name": "Widget"}, headers=HTMX
    )

    recorded = await events(app)
    assert [event.action for event in recorded] == ["api_key.created", "api_key.revoked", "api_key.deleted"]
    for event in recorded:
        assert event.subject_id == key_id
        assert event.actor_user_id == studio.admin.id
        assert event.actor_label == studio.admin.email
        assert event.ip_address
        assert event.subject_label.startswith("Widget (qv_pk_")
        assert key.group(0) not in repr(event.details) + event.subject_label
    assert recorded[0].details["scopes"] == ["read"]

    page = await admin_client.get("/settings/audit-log")
    assert page.status_code == 200
    rows = re.findall(r"<tr>\s*<td><time.*?</tr>", page.text, re.S)
    assert len(rows) == 3
    assert "Deleted API key" in rows[0] and "Created API key" in rows[2]  # newest first
    assert all(studio.admin.email in row and "Widget (qv_pk_" in row for row in rows)
    assert 'href="/settings/audit-log"' in (await admin_client.get("/settings/api-keys")).text


async def test_the_command_line_is_an_actor_too(app: Litestar, studio: Staff) -> None:
    await make_key(app, studio)
    [event] = await events(app)
    assert event.action == "api_key.created"
    assert event.actor_label == "Command line" and event.actor_user_id is None and event.ip_address is None


async def test_audit_log_is_for_admins_of_the_organization(
    client: Client, app: Litestar, studio: Staff, other_studio: Staff
) -> None:
    await make_key(app, other_studio)
    await sign_in(client, studio.admin)
    page = await client.get("/settings/audit-log")
    assert "Nothing has happened to your API keys yet." in page.text
    await client.post("/logout", data={"_csrf_token": csrf_token(client)})
    await sign_in(client, studio.staff)
    assert (await client.get("/settings/audit-log")).status_code == 403
