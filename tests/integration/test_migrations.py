"""Alembic's `upgrade head` builds exactly the schema the models describe, and the engine's SQLite pragmas."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from advanced_alchemy.base import orm_registry
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.db import create_engine
from app.settings import Settings
from tests.conftest import make_settings, migrate


def schema_differences(database: Path) -> list[object]:
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, orm_registry.metadata))
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(settings: Settings) -> None:
    database = make_url(settings.database_url).database
    assert database is not None
    assert schema_differences(Path(database)) == []


def test_upgrade_head_from_an_empty_file(tmp_path: Path, redis_url: str) -> None:
    database = tmp_path / "fresh.db"
    migrate(make_settings(f"sqlite+aiosqlite:///{database}", redis_url, tmp_path))

    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(orm_registry.metadata.tables) <= tables
    assert "alembic_version" in tables
    assert schema_differences(database) == []


def test_an_empty_database_differs_from_the_models(tmp_path: Path) -> None:
    # The comparison above can fail: against a file with no tables it reports every model table.
    database = tmp_path / "empty.db"
    sqlalchemy.create_engine(f"sqlite:///{database}").dispose()
    added = {
        diff[1].name
        for diff in schema_differences(database)
        if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added == set(orm_registry.metadata.tables)


async def test_engine_connections_enforce_foreign_keys_and_use_wal(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
            journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            busy_timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
    finally:
        await engine.dispose()
    assert foreign_keys == 1
    assert str(journal_mode).lower() == "wal"
    assert busy_timeout == 5000
