"""A fresh, migrated database with one studio, its catalog and many API keys."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app.demo import DEMO_ORGANIZATION, demo_services
from app.domain.accounts.services import OrganizationService
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.lib.db import create_alchemy_config, transaction
from app.settings import PROJECT_ROOT, Settings, normalize_database_url


@dataclass(frozen=True)
class Seeded:
    organization_id: uuid.UUID
    keys: list[str]
    key_ids: list[uuid.UUID]


def migrate(settings: Settings) -> None:
    """Alembic from zero to head, as `make run` and the tests do."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


async def _seed(settings: Settings, key_count: int, rate_limit: int) -> Seeded:
    alchemy = create_alchemy_config(settings)
    keys = [rules.generate_key() for _ in range(key_count)]
    try:
        async with transaction(alchemy) as session:
            organization = await OrganizationService(session=session).create_organization(DEMO_ORGANIZATION)
            session.add_all(demo_services(organization))  # the demo studio's catalog: three services
            rows = [
                ApiKey(
                    organization_id=organization.id,
                    name=f"bench {n}",
                    key_hash=rules.hash_key(key),
                    prefix=rules.display_prefix(key),
                    scopes=list(rules.SCOPES),
                    allowed_origins=[],
                    rate_limit_per_minute=rate_limit,
                )
                for n, key in enumerate(keys)
            ]
            session.add_all(rows)
            await session.flush()
            return Seeded(organization.id, keys, [row.id for row in rows])
    finally:
        await alchemy.get_engine().dispose()


def seed(settings: Settings, key_count: int, rate_limit: int) -> Seeded:
    migrate(settings)
    return asyncio.run(_seed(settings, key_count, rate_limit))


def write_keys(seeded: Seeded, path: Path) -> Path:
    path.write_text("\n".join(seeded.keys) + "\n")
    return path


async def _admin(admin_url: str, statement: str) -> None:
    url = make_url(normalize_database_url(admin_url, Path()))
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database(admin_url: str) -> str:
    """A new empty database on the server of admin_url; returns its URL."""
    name = f"qv_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_database_url(admin_url, Path())).set(database=name)
    return url.render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
