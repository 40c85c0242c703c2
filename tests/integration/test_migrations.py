"""Alembic's `upgrade head` builds exactly the schema the models describe, and the engine's SQLite pragmas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from advanced_alchemy.base import orm_registry
from advanced_alchemy.types import GUID
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.types import TypeEngine

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.db import create_engine
from app.settings import Settings
from tests.conftest import make_settings, migrate

pytestmark = pytest.mark.anyio


def declared_types(connection: Connection) -> dict[tuple[str, str], str]:
    """(table, column) -> the type exactly as written in the CREATE TABLE statement."""
    tables = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars().all()
    return {
        (table, row[1]): row[2]
        for table in tables
        for row in connection.exec_driver_sql(f"PRAGMA table_info('{table}')")
    }


def schema_differences(database: Path) -> list[Any]:
    """What `alembic revision --autogenerate` would still want to change, types included."""
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            declared = declared_types(connection)

            def compare_type(
                context: MigrationContext,
                inspected_column: sqlalchemy.Column[Any],
                metadata_column: sqlalchemy.Column[Any],
                inspected_type: TypeEngine[Any],
                metadata_type: TypeEngine[Any],
            ) -> bool | None:
                # SQLite reflects GUID's BINARY(16) as NUMERIC(16) (type affinity), which alembic reports as a
                # change. Compare what was actually declared with what GUID compiles to instead.
                if isinstance(metadata_type, GUID):
                    table = metadata_column.table.name
                    expected = metadata_type.compile(dialect=context.dialect)
                    return declared.get((table, metadata_column.name)) != expected
                return None  # alembic's own comparison for every other type

            context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
            return list(compare_metadata(context, orm_registry.metadata))
    finally:
        engine.dispose()


def database_path(settings: Settings) -> Path:
    database = make_url(settings.database_url).database
    assert database is not None
    return Path(database)


def test_migrated_schema_matches_the_models(settings: Settings) -> None:
    assert schema_differences(database_path(settings)) == []


def test_upgrade_head_into_a_fresh_file(tmp_path: Path, redis_url: str) -> None:
    database = tmp_path / "fresh.db"
    migrate(make_settings(f"sqlite+aiosqlite:///{database}", redis_url, tmp_path))

    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {*orm_registry.metadata.tables, "alembic_version"}
    assert schema_differences(database) == []


def test_the_comparison_notices_a_missing_table_and_a_wrong_id_type(tmp_path: Path) -> None:
    # The checks above can fail: a table left out, or an id declared with the wrong type, is reported.
    database = tmp_path / "drifted.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE organizations (id INTEGER PRIMARY KEY)")
    engine.dispose()

    differences = schema_differences(database)
    added_tables = {
        diff[1].name for diff in differences if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added_tables == set(orm_registry.metadata.tables) - {"organizations"}
    type_changes = [change for diff in differences if isinstance(diff, list) for change in diff]
    assert ("organizations", "id") in {
        (change[2], change[3]) for change in type_changes if change[0] == "modify_type"
    }


async def test_engine_connections_enforce_foreign_keys_and_use_wal(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
            journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
    finally:
        await engine.dispose()
    assert foreign_keys == 1
    assert str(journal_mode).lower() == "wal"
