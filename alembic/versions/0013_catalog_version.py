"""catalog version

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:20:00

`organizations.catalog_version`, bumped by database triggers on every insert, update and delete of the
organization's services, packages (and their services), opening hours and closures: whatever writes them
(staff pages, the CLI, raw SQL) moves the version, and the API's per-process catalog cache, checked against the
version the key lookup reads, sees the change on the very next request in every process.

On SQLite a table that is recreated (batch mode "recreate") loses its triggers: a later migration that
recreates one of these tables must create its triggers again (`create_triggers` here).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables with an organization_id whose rows are the public catalog or the schedule.
CATALOG_TABLES = ("services", "packages", "opening_hours", "closures")
_BUMP = "UPDATE organizations SET catalog_version = catalog_version + 1 WHERE id = {row}.organization_id"
# package_services has no organization_id: its package's organization.
_BUMP_PACKAGE = (
    "UPDATE organizations SET catalog_version = catalog_version + 1 "
    "WHERE id = (SELECT organization_id FROM packages WHERE id = {row}.package_id)"
)


def _sqlite_triggers() -> list[tuple[str, str]]:
    triggers = []
    for table, bump in [*((table, _BUMP) for table in CATALOG_TABLES), ("package_services", _BUMP_PACKAGE)]:
        for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))):
            name = f"{table}_{event.lower()}_bumps_catalog_version"
            body = "; ".join(bump.format(row=row) for row in rows)
            triggers.append((name, f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {body}; END"))
    return triggers


def _postgres_function(name: str, bump: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN {bump.format(row="OLD")}; END IF;
    IF TG_OP <> 'DELETE' THEN {bump.format(row="NEW")}; END IF;
    RETURN NULL;
END
$$"""


def create_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for _name, sql in _sqlite_triggers():
            op.execute(sql)
        return
    op.execute(_postgres_function("bump_catalog_version", _BUMP))
    op.execute(_postgres_function("bump_catalog_version_of_package", _BUMP_PACKAGE))
    for table in (*CATALOG_TABLES, "package_services"):
        function = (
            "bump_catalog_version_of_package" if table == "package_services" else "bump_catalog_version"
        )
        op.execute(
            f"CREATE TRIGGER {table}_bumps_catalog_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, _sql in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for table in (*CATALOG_TABLES, "package_services"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_bumps_catalog_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS bump_catalog_version()")
    op.execute("DROP FUNCTION IF EXISTS bump_catalog_version_of_package()")


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("catalog_version", sa.Integer(), server_default="0", nullable=False))
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    if op.get_bind().dialect.name == "sqlite":
        # SQLite drops a column in place (3.35+); batch mode would rebuild the table from its reflection.
        op.execute("ALTER TABLE organizations DROP COLUMN catalog_version")
    else:
        op.drop_column("organizations", "catalog_version")
