"""Alembic environment: runs migrations with the app's own engine settings (SQLite pragmas included)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from advanced_alchemy.base import orm_registry
from advanced_alchemy.types import GUID
from alembic import context
from sqlalchemy.engine import Connection

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.lib.db import create_engine
from app.settings import Settings, get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = orm_registry.metadata


def _settings() -> Settings:
    # Tests pass their own settings; everything else reads the environment.
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()


def _compare_type(
    _context: Any, _inspected: Any, _column: Any, _inspected_type: Any, metadata_type: Any
) -> bool | None:
    # SQLite reflects GUID's BINARY(16) as NUMERIC(16): not a change. None: Alembic's own comparison.
    return False if isinstance(metadata_type, GUID) else None


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=_compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_settings().database_url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
