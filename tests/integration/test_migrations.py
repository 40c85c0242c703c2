"""Alembic's `upgrade head` builds exactly the schema the models describe, and the engine's connection settings.

Every test runs on the leg's backend: SQLite files by default, PostgreSQL databases under TEST_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from advanced_alchemy.base import orm_registry
from advanced_alchemy.types import GUID
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.domain.accounts.models import User
from app.lib.db import create_engine
from app.settings import PROJECT_ROOT, Settings
from tests.fixtures.database import DatabaseTemplate, _run_sql_on_postgres, make_settings, migrate

pytestmark = pytest.mark.anyio


@pytest.fixture
def empty_database(tmp_path: Path, database_template: DatabaseTemplate, redis_url: str) -> Iterator[Settings]:
    """Settings for a database with no tables at all, on the leg's backend."""
    admin_url = database_template.postgres_admin_url
    if admin_url is None:
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", redis_url, tmp_path)
        return
    name = f"qv_fresh_{uuid.uuid4().hex[:12]}"
    _run_sql_on_postgres(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_settings(database_template.postgres_url(name), redis_url, tmp_path)
    finally:
        _run_sql_on_postgres(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_sync_on(settings: Settings, work: Any) -> Any:
    """`work(connection)` on a sync view of one connection of the app's own engine, then commit."""

    async def main() -> Any:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                result = await connection.run_sync(work)
                await connection.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def declared_sqlite_types(connection: Connection) -> dict[tuple[str, str], str]:
    """(table, column) -> the type exactly as written in SQLite's CREATE TABLE statement."""
    tables = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars().all()
    return {
        (table, row[1]): row[2]
        for table in tables
        for row in connection.exec_driver_sql(f"PRAGMA table_info('{table}')")
    }


def compare_with_models(connection: Connection) -> list[Any]:
    is_sqlite = connection.dialect.name == "sqlite"
    declared = declared_sqlite_types(connection) if is_sqlite else {}

    def compare_type(
        context: MigrationContext,
        inspected_column: sqlalchemy.Column[Any],
        metadata_column: sqlalchemy.Column[Any],
        inspected_type: TypeEngine[Any],
        metadata_type: TypeEngine[Any],
    ) -> bool | None:
        # SQLite reflects GUID's BINARY(16) as NUMERIC(16) (type affinity), which alembic reports as a
        # change. Compare what was actually declared with what GUID compiles to instead.
        if is_sqlite and isinstance(metadata_type, GUID):
            table = metadata_column.table.name
            expected = metadata_type.compile(dialect=context.dialect)
            return declared.get((table, metadata_column.name)) != expected
        return None  # alembic's own comparison for every other type, and for every type on PostgreSQL

    context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
    return list(compare_metadata(context, orm_registry.metadata))


def schema_differences(settings: Settings) -> list[Any]:
    """What `alembic revision --autogenerate` would still want to change, types included."""
    differences: list[Any] = run_sync_on(settings, compare_with_models)
    return differences


def table_names(settings: Settings) -> set[str]:
    names: set[str] = run_sync_on(
        settings, lambda connection: set(sqlalchemy.inspect(connection).get_table_names())
    )
    return names


def test_migrated_schema_matches_the_models(settings: Settings) -> None:
    assert schema_differences(settings) == []


def test_upgrade_head_into_an_empty_database(empty_database: Settings) -> None:
    migrate(empty_database)

    assert table_names(empty_database) == {*orm_registry.metadata.tables, "alembic_version"}
    assert schema_differences(empty_database) == []


def test_sqlite_keeps_usage_counts_in_their_primary_key(tmp_path: Path, redis_url: str) -> None:
    # Whatever the leg's backend: this is about SQLite's table layout. The worker's fold writes one b-tree.
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'layout.db'}", redis_url, tmp_path)

    def usage_counts_ddl() -> str:
        ddl: str = run_sync_on(
            settings,
            lambda connection: connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'usage_counts'"
            ).scalar_one(),
        )
        return ddl.rstrip()

    migrate(settings)
    assert usage_counts_ddl().endswith("WITHOUT ROWID")
    assert "FOREIGN KEY" in usage_counts_ddl() and "ON DELETE CASCADE" in usage_counts_ddl()
    assert schema_differences(settings) == []

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    command.downgrade(config, "0005")
    assert not usage_counts_ddl().endswith("WITHOUT ROWID")
    migrate(settings)
    assert usage_counts_ddl().endswith("WITHOUT ROWID")


def test_the_comparison_notices_a_missing_table_and_a_wrong_id_type(empty_database: Settings) -> None:
    # The checks above can fail: a table left out, or an id declared with the wrong type, is reported.
    run_sync_on(
        empty_database,
        lambda connection: connection.exec_driver_sql("CREATE TABLE organizations (id INTEGER PRIMARY KEY)"),
    )

    differences = schema_differences(empty_database)
    added_tables = {
        diff[1].name for diff in differences if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added_tables == set(orm_registry.metadata.tables) - {"organizations"}
    type_changes = [change for diff in differences if isinstance(diff, list) for change in diff]
    assert ("organizations", "id") in {
        (change[2], change[3]) for change in type_changes if change[0] == "modify_type"
    }


async def test_engine_connections_enforce_foreign_keys(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        if settings.is_sqlite:
            # SQLite only enforces foreign keys when each connection asks; WAL lets readers and a writer overlap.
            async with engine.connect() as connection:
                foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
                journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            assert foreign_keys == 1
            assert str(journal_mode).lower() == "wal"
        # On either backend: a user of an organization that does not exist is refused.
        async with AsyncSession(engine) as session:
            session.add(
                User(
                    email=f"orphan-{uuid.uuid4().hex[:8]}@nowhere.test",
                    password_hash="not-a-hash",
                    role="staff",
                    organization_id=uuid.uuid4(),
                )
            )
            with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
                await session.flush()
    finally:
        await engine.dispose()


def test_every_catalog_write_moves_its_organizations_catalog_version(empty_database: Settings) -> None:
    """0013's triggers, on raw SQL (whatever writes the rows): insert, update and delete of each catalog table,
    and of a package's services; another organization's version stays; downgrading removes them."""
    migrate(empty_database)
    ours, theirs, service, package = (uuid.uuid4() for _ in range(4))

    def work(connection: Connection) -> list[int]:
        binary = connection.dialect.name == "sqlite"  # GUID is BINARY(16) on SQLite, uuid on PostgreSQL

        def guid(value: uuid.UUID) -> Any:
            return value.bytes if binary else value

        def run(sql: str, **values: Any) -> None:
            connection.execute(
                sqlalchemy.text(sql),
                {k: guid(v) if isinstance(v, uuid.UUID) else v for k, v in values.items()},
            )

        def version(organization: uuid.UUID) -> int:
            found = connection.execute(
                sqlalchemy.text("SELECT catalog_version FROM organizations WHERE id = :id"),
                {"id": guid(organization)},
            ).scalar_one()
            return int(found)

        for organization, slug in ((ours, "ours"), (theirs, "theirs")):
            run(
                "INSERT INTO organizations (id, name, slug, time_zone, created_at, updated_at)"
                " VALUES (:id, :slug, :slug, 'UTC', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                id=organization,
                slug=slug,
            )
        seen = [version(ours)]
        run(
            "INSERT INTO services (id, organization_id, name, description, duration_minutes, price_amount, currency,"
            " capacity, is_active, slot_interval_minutes, min_notice_minutes, booking_horizon_days,"
            " buffer_before_minutes, buffer_after_minutes, created_at, updated_at) VALUES (:id, :org, 'A', '', 60,"
            " 100, 'GBP', 1, true, 30, 0, 60, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=service,
            org=ours,
        )
        seen.append(version(ours))
        run("UPDATE services SET name = 'B' WHERE id = :id", id=service)
        seen.append(version(ours))
        run(
            "INSERT INTO packages (id, organization_id, name, description, session_count, validity_days,"
            " price_amount, currency, is_active, created_at, updated_at)"
            " VALUES (:id, :org, 'P', '', 5, 30, 100, 'GBP', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=package,
            org=ours,
        )
        seen.append(version(ours))
        run("INSERT INTO package_services (package_id, service_id) VALUES (:p, :s)", p=package, s=service)
        seen.append(version(ours))
        run("DELETE FROM package_services")
        seen.append(version(ours))
        run(
            "INSERT INTO opening_hours (id, organization_id, weekday, opens_at, closes_at, created_at, updated_at)"
            " VALUES (:id, :org, 1, '09:00:00', '17:00:00', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=uuid.uuid4(),
            org=ours,
        )
        seen.append(version(ours))
        run("UPDATE opening_hours SET closes_at = '18:00:00'")
        seen.append(version(ours))
        run(
            "INSERT INTO closures (id, organization_id, start_date, end_date, reason, created_at, updated_at)"
            " VALUES (:id, :org, '2030-01-01', '2030-01-02', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=uuid.uuid4(),
            org=ours,
        )
        seen.append(version(ours))
        run("DELETE FROM closures")
        seen.append(version(ours))
        run("DELETE FROM opening_hours")
        seen.append(version(ours))
        run("DELETE FROM packages")
        seen.append(version(ours))
        run("DELETE FROM services")
        seen.append(version(ours))
        assert version(theirs) == 0
        return seen

    seen: list[int] = run_sync_on(empty_database, work)
    assert seen[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(seen)), seen

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["settings"] = empty_database
    config.attributes["configure_logger"] = False
    # Down to the revision before the triggers' own.
    command.downgrade(config, str(ScriptDirectory.from_config(config).get_revision("0013").down_revision))
    assert "catalog_version" not in run_sync_on(
        empty_database,
        lambda connection: {
            column["name"] for column in sqlalchemy.inspect(connection).get_columns("organizations")
        },
    )
    migrate(empty_database)
    assert schema_differences(empty_database) == []
