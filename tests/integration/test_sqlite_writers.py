"""SQLite's one write lock: a transaction that reads and then writes begins as a writer (BEGIN IMMEDIATE).

A deferred SQLite transaction that has read, and then finds another connection's commit (the worker's fold,
another web process, the CLI), cannot write at all: "database is locked" at once, whatever the busy timeout.
PostgreSQL reads committed rows and has no such failure, so this module runs on SQLite on both legs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from app.domain.accounts.models import Organization
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import CLI_ACTOR
from app.lib.db import transaction
from app.settings import Settings
from tests.fixtures.app import alchemy_of, app_engine
from tests.fixtures.database import another_writer_after_first_read
from tests.fixtures.staff import Staff, csrf_token

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(sqlite_settings: Settings) -> Iterator[Settings]:
    assert sqlite_settings.is_sqlite
    yield sqlite_settings


async def test_a_staff_write_waits_its_turn_when_another_writer_commits_after_its_first_read(
    admin_client: AsyncTestClient[Litestar], app: Litestar, settings: Settings, studio: Staff
) -> None:
    async with transaction(alchemy_of(app)) as session:
        request = rules.validate_key_request(
            name="Widget", scopes=["read"], origins="", rate_limit=None, expires_in_days=None
        )
        issued = await ApiKeyService(session=session).issue(
            studio.organization.id, request, actor=CLI_ACTOR, now=datetime.now(UTC)
        )
    with another_writer_after_first_read(app_engine(app), settings) as other_writer:
        revoked = await admin_client.post(
            f"/settings/api-keys/{issued.api_key.id}/revoke",
            data={"_csrf_token": csrf_token(admin_client)},
            headers={"HX-Request": "true"},
        )
    assert revoked.status_code == 200, revoked.text
    assert other_writer == ["database is locked"], "the request held the write lock from its first read"
    async with transaction(alchemy_of(app)) as session:
        assert (await session.get_one(ApiKey, issued.api_key.id)).revoked_at is not None


async def test_a_transaction_outside_a_request_begins_as_a_writer(
    settings: Settings, app: Litestar, studio: Staff
) -> None:
    """The CLI, the worker's fold and seeding read, then write."""
    alchemy = alchemy_of(app)
    with another_writer_after_first_read(alchemy.get_engine(), settings) as other_writer:
        async with transaction(alchemy) as session:
            before = await session.scalar(select(func.count()).select_from(Organization))
            await session.execute(update(Organization).values(name=Organization.name + " Ltd"))
    assert other_writer == ["database is locked"]
    async with transaction(alchemy) as session:
        names = (await session.scalars(select(Organization.name))).all()
    assert before == len(names) >= 1 and all(name.endswith(" Ltd") for name in names)
