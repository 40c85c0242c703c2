"""The `litestar` CLI as operators run it: a real subprocess against a migrated per-test database.

The database is the leg's: a SQLite file by default, a PostgreSQL database under TEST_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from advanced_alchemy.base import orm_registry
from sqlalchemy import Executable, func, select
from sqlalchemy.engine import make_url

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.asgi import create_app
from app.cli import run_in_transaction
from app.db import create_engine
from app.demo import seed_demo
from app.domain.accounts.models import Organization, User
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.settings import PROJECT_ROOT, Settings

LITESTAR = Path(sys.executable).parent / "litestar"
SUMMARY_FIELDS = {
    "id",
    "name",
    "prefix",
    "scopes",
    "status",
    "allowed_origins",
    "rate_limit_per_minute",
    "expires_at",
    "last_used_at",
    "created_at",
}

Result = subprocess.CompletedProcess[str]
Cli = Callable[[str], Result]


@pytest.fixture
def demo(settings: Settings) -> None:
    """The demo organization, seeded in-process (what `litestar demo seed` does) to spare a subprocess."""
    assert run_in_transaction(create_app(settings), seed_demo)


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    env = dict(os.environ)
    for name in ("SECRET_KEY", "FORCE_COLOR", "PORT"):
        env.pop(name, None)
    env.update(
        LITESTAR_APP="app.asgi:create_app",
        APP_ENV="dev",
        # The per-test database and the suite's Redis, exactly as the settings fixture gives them.
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DATA_DIR=str(tmp_path),
        # Plain, stable error boxes: no colour codes, and rich's width not taken from the terminal.
        NO_COLOR="1",
        COLUMNS="120",
    )

    def run(command: str) -> Result:
        """`litestar <command>`, the command split as a shell would split it."""
        # The timeout only stops a hung command from hanging the suite; nothing here is about speed.
        return subprocess.run(  # noqa: S603  (fixed executable, arguments from the test)
            [str(LITESTAR), *shlex.split(command)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def ok(result: Result) -> Result:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def error_message(result: Result) -> str:
    """The one-line message of a failed command, unwrapped from the CLI's error box."""
    assert result.returncode != 0, f"expected a failure, got exit 0\nstdout:\n{result.stdout}"
    lines = [line.strip() for line in result.stderr.splitlines()]
    boxed = [line[1:-1].strip() for line in lines if line.startswith("│") and line.endswith("│")]
    if boxed:
        return " ".join(boxed)
    plain = [line.removeprefix("Error:").strip() for line in lines if line.startswith("Error:")]
    assert plain, f"no error message in stderr:\n{result.stderr}"
    return " ".join(plain)


def key_list(cli: Cli, org: str = "demo") -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = json.loads(ok(cli(f"keys list --org {org} --json")).stdout)
    return keys


def named(keys: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [key] = [key for key in keys if key["name"] == name]
    return key


def rows(settings: Settings, *statements: Executable) -> list[tuple[Any, ...]]:
    """Every row the statements return, read through the app's own engine (outside the CLI's process)."""

    async def fetch() -> list[tuple[Any, ...]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for statement in statements for row in await connection.execute(statement)]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def every_row(settings: Settings) -> list[tuple[Any, ...]]:
    """Every row of every table the models declare."""
    return rows(settings, *(select(table) for table in orm_registry.metadata.sorted_tables))


def form_errors(**fields: Any) -> dict[str, str]:
    """The messages the API Keys form shows for this input."""
    with pytest.raises(rules.InvalidKeyRequest) as invalid:
        rules.validate_key_request(**fields)
    return invalid.value.errors


def test_accounts_and_demo_seed(cli: Cli, settings: Settings) -> None:
    created = ok(cli("accounts create-org --name 'Acme Studio' --slug acme --time-zone Europe/Paris"))
    assert created.stdout.startswith("Created organization acme (")

    bad_zone = cli("accounts create-org --name Mars --slug mars --time-zone Mars/Olympus")
    assert error_message(bad_zone) == "'Mars/Olympus' is not an IANA time zone (e.g. Europe/London)."

    user = ok(
        cli("accounts create-user --org acme --email Owner@Acme.test --role admin --password long-enough-1")
    )
    assert user.stdout.strip() == "Created admin owner@acme.test in acme."
    short = cli("accounts create-user --org acme --email short@acme.test --password short")
    assert error_message(short) == "Password must be at least 8 characters."

    assert ok(cli("demo seed")).stdout.strip() == "Demo data created."
    assert ok(cli("demo seed")).stdout.strip() == "Demo data already present."

    organizations = rows(
        settings,
        select(Organization.slug, Organization.name, Organization.time_zone).order_by(Organization.slug),
    )
    assert organizations == [
        ("acme", "Acme Studio", "Europe/Paris"),
        ("demo", "Demo Studio", "Europe/London"),
    ]
    users = rows(
        settings,
        select(User.email, User.role, Organization.slug, User.password_hash)
        .join(Organization, Organization.id == User.organization_id)
        .order_by(User.email),
    )
    assert [row[:3] for row in users] == [
        ("demo@example.com", "admin", "demo"),
        ("owner@acme.test", "admin", "acme"),
        ("staff@example.com", "staff", "demo"),
    ]
    # Passwords are stored as Argon2 hashes, never as given.
    assert all(row[3].startswith("$argon2") for row in users)


def test_create_and_list_keys(cli: Cli, demo: None, settings: Settings, tmp_path: Path) -> None:
    [(keys_before,)] = rows(settings, select(func.count()).select_from(ApiKey))
    created = ok(
        cli(
            "keys create --org demo --name X --scopes read,write --origins 'https://Example.com:443/'"
            " --rate-limit 120 --expires-in-days 30"
        )
    )
    key = created.stdout.splitlines()[-1]
    assert rules.is_well_formed(key), created.stdout

    # Bad input: refused with the API Keys form's own messages, and nothing is written.
    bad_fields = cli("keys create --org demo --name '' --scopes admin --rate-limit 0")
    errors = form_errors(name="", scopes=["admin"], origins="", rate_limit="0", expires_in_days=None)
    assert set(errors) == {"name", "scopes", "rate_limit_per_minute"}
    assert error_message(bad_fields) == " ".join(errors.values())
    bad_origin = cli("keys create --org demo --name Y --scopes read --origins https://example.com/path")
    errors = form_errors(
        name="Y", scopes=["read"], origins="https://example.com/path", rate_limit=None, expires_in_days=None
    )
    assert set(errors) == {"allowed_origins"}
    assert error_message(bad_origin) == errors["allowed_origins"]

    listed = ok(cli("keys list --org demo --json"))
    keys = json.loads(listed.stdout)
    assert len(keys) == keys_before + 1
    assert all(set(summary) == SUMMARY_FIELDS for summary in keys)
    summary = named(keys, "X")
    assert summary["prefix"] == rules.display_prefix(key)
    assert summary["scopes"] == ["read", "write"]
    assert summary["status"] == "active"
    assert summary["allowed_origins"] == ["https://example.com"]
    assert summary["rate_limit_per_minute"] == 120
    assert summary["last_used_at"] is None
    lifetime = datetime.fromisoformat(summary["expires_at"]) - datetime.fromisoformat(summary["created_at"])
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    assert str(uuid.UUID(summary["id"])) == summary["id"]
    secret_part = key[len(summary["prefix"]) :]
    assert secret_part not in listed.stdout + listed.stderr

    # Only the hash is stored. On SQLite, neither the database file nor its write-ahead log holds the key
    # anywhere (read before this test opens the database again, so the log is as the CLI left it)...
    if settings.is_sqlite:
        database = Path(make_url(settings.database_url).database or "")
        files = sorted(tmp_path.glob(database.name + "*"))
        assert database in files
        for path in files:
            assert secret_part.encode() not in path.read_bytes(), path.name
    # ...and on either backend, no row of any table does, while the key's hash is there to be found.
    table_rows = every_row(settings)
    assert any(rules.hash_key(key) in repr(row) for row in table_rows)
    for row in table_rows:
        assert secret_part not in repr(row), row
    stored = rows(settings, select(ApiKey.key_hash).where(ApiKey.id == uuid.UUID(summary["id"])))
    assert stored == [(rules.hash_key(key),)]


def test_revoke_and_delete(cli: Cli, demo: None, settings: Settings) -> None:
    ok(cli("keys create --org demo --name Doomed --scopes read"))
    keys_before = key_list(cli)
    summary = named(keys_before, "Doomed")
    prefix, key_id = summary["prefix"], summary["id"]

    def revoked_at() -> Any:
        [(moment,)] = rows(settings, select(ApiKey.revoked_at).where(ApiKey.prefix == prefix))
        return moment

    revoked = ok(cli(f"keys revoke {prefix}"))
    assert revoked.stdout.strip() == f"Revoked API key 'Doomed' ({prefix}...)."
    first_revocation = revoked_at()
    assert first_revocation is not None

    # Revoking again, by the prefix as the list prints it, changes nothing and is not an error.
    ok(cli(f"keys revoke {prefix}..."))
    assert revoked_at() == first_revocation
    keys = key_list(cli)
    assert named(keys, "Doomed")["status"] == "revoked"
    # Only that key: every other key is as it was.
    assert [key for key in keys if key["id"] != key_id] == [key for key in keys_before if key["id"] != key_id]

    unknown = str(uuid.uuid4())
    assert error_message(cli(f"keys revoke {unknown}")) == f"No API key with id or prefix {unknown!r}."
    assert error_message(cli(f"keys delete {unknown}")) == f"No API key with id or prefix {unknown!r}."

    deleted = ok(cli(f"keys delete {key_id}"))
    assert deleted.stdout.strip() == f"Deleted API key 'Doomed' ({prefix}...)."
    keys_after = key_list(cli)
    assert keys_after == [key for key in keys_before if key["id"] != key_id]
    assert rows(settings, select(func.count()).select_from(ApiKey).where(ApiKey.prefix == prefix)) == [(0,)]
