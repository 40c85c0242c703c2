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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from advanced_alchemy.base import orm_registry
from sqlalchemy import Executable, func, select
from sqlalchemy.engine import make_url

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.asgi import create_app
from app.demo import DEMO_WEBHOOK_URL, seed_demo
from app.domain.accounts.models import Organization, User
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.audit.models import AuditEvent
from app.domain.usage.jobs import fold_usage
from app.domain.webhooks.models import WebhookEvent
from app.lib.cli import run_in_transaction
from app.lib.db import create_alchemy_config, create_engine
from app.settings import PROJECT_ROOT, Settings
from app.workers import job_context

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
    "previous_prefix",
    "previous_secret_expires_at",
    "last_used_at",
    "created_at",
}

Result = subprocess.CompletedProcess[str]
Cli = Callable[[str], Result]


@pytest.fixture
def demo(settings: Settings) -> None:
    """The demo organization, seeded in-process (what `litestar demo seed` does) to spare a subprocess."""
    assert run_in_transaction(create_app(settings), seed_demo)


def cli_runner(settings: Settings, tmp_path: Path, *, app_path: str | None = "app.asgi:create_app") -> Cli:
    """`litestar` in the project's root on this test's database; app_path=None: no LITESTAR_APP at all."""
    env = dict(os.environ)
    for name in ("SECRET_KEY", "FORCE_COLOR", "PORT", "LITESTAR_APP"):
        env.pop(name, None)
    if app_path is not None:
        env["LITESTAR_APP"] = app_path
    env.update(
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


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return cli_runner(settings, tmp_path)


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
    # The demo endpoint takes every event: one api_key.revoked for the key, however often it is revoked.
    revocations = rows(settings, select(WebhookEvent.body).where(WebhookEvent.type == "api_key.revoked"))
    assert [json.loads(body)["data"]["id"] for (body,) in revocations] == [key_id]
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


def test_the_cli_finds_the_app_from_the_project_root_without_litestar_app(
    demo: None, settings: Settings, tmp_path: Path
) -> None:
    # What a new user types first, with nothing exported: Litestar's discovery must find the app factory.
    bare = cli_runner(settings, tmp_path, app_path=None)
    assert [key["name"] for key in key_list(bare)] == [
        key["name"] for key in key_list(cli_runner(settings, tmp_path))
    ]
    assert "Traceback" not in ok(bare("keys list --org demo")).stderr


# --- keys show, update, roll ------------------------------------------------------------------------


def test_keys_show_by_id_or_prefix(cli: Cli, demo: None) -> None:
    key = ok(cli("keys create --org demo --name Shown --scopes read --origins https://shop.example")).stdout
    summary = named(key_list(cli), "Shown")
    shown = json.loads(ok(cli(f"keys show {summary['prefix']}... --json")).stdout)
    assert shown == summary
    assert json.loads(ok(cli(f"keys show {summary['id']} --json")).stdout) == summary
    text = ok(cli(f"keys show {summary['prefix']}")).stdout
    assert "https://shop.example" in text and "expires         never" in text
    assert key.splitlines()[-1][len(summary["prefix"]) :] not in text
    unknown = cli("keys show qv_pk_nothere0")
    assert error_message(unknown) == "No API key with id or prefix 'qv_pk_nothere0'."


def test_keys_update_changes_what_is_given_and_records_it(cli: Cli, demo: None, settings: Settings) -> None:
    ok(cli("keys create --org demo --name Editable --scopes read --rate-limit 60"))
    summary = named(key_list(cli), "Editable")
    prefix = summary["prefix"]
    updated = ok(
        cli(
            f"keys update {prefix} --name Edited --scopes read,write --origins https://a.example,https://b.example"
            " --rate-limit 120 --expires-in-days 30"
        )
    )
    assert updated.stdout.startswith("Updated API key 'Edited'")
    after = named(key_list(cli), "Edited")
    assert after["scopes"] == ["read", "write"]
    assert after["allowed_origins"] == ["https://a.example", "https://b.example"]
    assert after["rate_limit_per_minute"] == 120
    assert after["expires_at"] is not None and after["id"] == summary["id"] and after["prefix"] == prefix
    # "" allows every origin again; --no-expiry removes the expiry; nothing else moves.
    ok(cli(f'keys update {prefix} --origins "" --no-expiry'))
    cleared = named(key_list(cli), "Edited")
    assert cleared["allowed_origins"] == [] and cleared["expires_at"] is None
    assert cleared["rate_limit_per_minute"] == 120
    day = (datetime.now(UTC) + timedelta(days=100)).date()
    ok(cli(f"keys update {prefix} --expires-on {day.isoformat()}"))
    expires_at = datetime.fromisoformat(named(key_list(cli), "Edited")["expires_at"])
    assert expires_at == rules.end_of_day(day, "Europe/London")  # the demo organization's time zone

    details = rows(
        settings,
        select(AuditEvent.details).where(
            AuditEvent.subject_id == uuid.UUID(summary["id"]), AuditEvent.action == "api_key.updated"
        ),
    )
    assert len(details) >= 2
    assert {"before": "Editable", "after": "Edited"} in [d[0]["changes"].get("name") for d in details]


def test_keys_update_bad_input_changes_nothing(cli: Cli, demo: None, settings: Settings) -> None:
    ok(cli("keys create --org demo --name Steady --scopes read"))
    prefix = named(key_list(cli), "Steady")["prefix"]
    before = every_row(settings)
    cases = {
        f"keys update {prefix} --rate-limit 0": (
            "Rate limit must be a whole number between 1 and 1000 requests per minute."
        ),
        f"keys update {prefix} --scopes admin": 'Unknown scope "admin"; choose Read or Write.',
        f"keys update {prefix} --origins example.com": (
            '"example.com" has no scheme; add https:// in front (https://example.com)'
        ),
        f"keys update {prefix} --name ''": "Name is required.",
        f"keys update {prefix} --expires-in-days 7": "Expiration must be Never, 30, 90 or 365 days.",
        f"keys update {prefix} --expires-on 2020-01-01": "The expiry date must be after today.",
        f"keys update {prefix} --expires-on tomorrow": "Enter the expiry date as YYYY-MM-DD, like 2027-01-31.",
        f"keys update {prefix} --expires-in-days 30 --no-expiry": (
            "Give one of --expires-in-days, --expires-on and --no-expiry."
        ),
        f"keys update {prefix}": (
            "Nothing to change: give --name, --scopes, --origins, --rate-limit or an expiry option."
        ),
        "keys update qv_pk_nothere0 --name X": "No API key with id or prefix 'qv_pk_nothere0'.",
    }
    for command, message in cases.items():
        assert error_message(cli(command)) == message, command
    assert every_row(settings) == before


def test_keys_roll_prints_the_new_key_last_and_keeps_one_previous_secret(
    cli: Cli, demo: None, settings: Settings
) -> None:
    first = ok(cli("keys create --org demo --name Rolling --scopes read")).stdout.splitlines()[-1]
    summary = named(key_list(cli), "Rolling")
    rolled = ok(cli(f"keys roll {summary['prefix']} --grace 24h"))
    second = rolled.stdout.splitlines()[-1]
    assert rules.is_well_formed(second) and second != first
    assert f"The previous secret {rules.display_prefix(first)}... works until" in rolled.stdout
    after = named(key_list(cli), "Rolling")
    assert after["id"] == summary["id"] and after["prefix"] == rules.display_prefix(second)
    assert after["previous_prefix"] == rules.display_prefix(first)
    grace = datetime.fromisoformat(after["previous_secret_expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < grace <= timedelta(hours=24)
    stored = rows(settings, select(ApiKey.key_hash, ApiKey.previous_key_hash).where(ApiKey.name == "Rolling"))
    assert stored == [(rules.hash_key(second), rules.hash_key(first))]

    # Rolling again (by the previous prefix, as an operator might still have it) ends the older one now.
    again = ok(cli(f"keys roll {rules.display_prefix(first)} --grace 0"))
    assert f"The older previous secret {rules.display_prefix(first)}... stopped working now" in again.stdout
    third = again.stdout.splitlines()[-1]
    assert named(key_list(cli), "Rolling")["previous_prefix"] == rules.display_prefix(second)
    assert rules.is_well_formed(third)


def test_keys_roll_bad_input_changes_nothing(cli: Cli, demo: None, settings: Settings) -> None:
    ok(cli("keys create --org demo --name Unrolled --scopes read"))
    ok(cli("keys create --org demo --name Gone --scopes read"))
    prefix = named(key_list(cli), "Unrolled")["prefix"]
    gone = named(key_list(cli), "Gone")["prefix"]
    ok(cli(f"keys revoke {gone}"))
    before = every_row(settings)
    grace_message = "Grace must be 0 or a duration such as 30s, 15m, 1h, 24h or 7d, at most 7 days."
    for grace in ("8d", "1w", "soon", "-1h"):
        assert error_message(cli(f"keys roll {prefix} --grace {grace}")) == grace_message
    assert "--grace" in error_message(cli(f"keys roll {prefix}"))
    assert error_message(cli(f"keys roll {gone} --grace 1h")) == (
        "A revoked key cannot be rolled: create a new key instead."
    )
    assert every_row(settings) == before


# --- keys scan ---------------------------------------------------------------------------------------


def issue_demo_key(settings: Settings, name: str, *, revoked: bool = False) -> str:
    """A key of the demo organization, issued (and revoked) in-process through the real service."""
    from app.domain.api_keys.services import ApiKeyService
    from app.domain.audit.services import CLI_ACTOR

    async def work(session: Any) -> str:
        organization = await session.scalar(select(Organization).where(Organization.slug == "demo"))
        request = rules.validate_key_request(
            name=name, scopes=["read"], origins="", rate_limit=60, expires_in_days=None
        )
        service = ApiKeyService(session=session)
        now = datetime.now(UTC)
        issued = await service.issue(organization.id, request, actor=CLI_ACTOR, now=now)
        if revoked:
            await service.revoke(issued.api_key, actor=CLI_ACTOR, now=now)
        return issued.secret

    return run_in_transaction(create_app(settings), work)


def leaky_tree(root: Path, live: str, revoked: str) -> dict[str, Path]:
    """A project with a live key, a revoked one, a key with a wrong checksum, a binary file and a .git folder."""
    typo = live[:-1] + ("A" if live[-1] != "A" else "B")
    files = {
        "live": root / "web" / "widget.js",
        "revoked": root / "deploy.env",
        "typo": root / "README.md",
        "binary": root / "web" / "logo.png",
        "git": root / ".git" / "ORIG_HEAD",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    files["live"].write_text(f"// the widget\n\nconst key = '{live}';\n")
    files["revoked"].write_text(f"QV_KEY={revoked}\n")
    files["typo"].write_text(f"Example: {typo}\n")
    files["binary"].write_bytes(b"\x89PNG\x00\x00" + live.encode())
    files["git"].write_text(live)
    return files


def test_keys_scan_finds_exactly_the_valid_keys_and_never_prints_one(
    cli: Cli, demo: None, settings: Settings, tmp_path: Path
) -> None:
    live, revoked = issue_demo_key(settings, "Widget"), issue_demo_key(settings, "Old", revoked=True)
    files = leaky_tree(tmp_path / "project", live, revoked)

    result = cli(f"keys scan {tmp_path / 'project'}")

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{files['revoked']}:1: {rules.display_prefix(revoked)}...",
        f"{files['live']}:3: {rules.display_prefix(live)}...",
    ]
    assert "2 QuickVisit key(s) found in 2 file(s)." in result.stderr
    for key in (live, revoked, live[:-1]):
        assert key not in result.stdout + result.stderr


def test_keys_scan_check_live_says_which_keys_are_live_here(
    cli: Cli, demo: None, settings: Settings, tmp_path: Path
) -> None:
    live, revoked = issue_demo_key(settings, "Widget"), issue_demo_key(settings, "Old", revoked=True)
    files = leaky_tree(tmp_path / "project", live, revoked)
    live_id = named(key_list(cli), "Widget")["id"]

    result = cli(f"keys scan --check-live {files['live']} {files['revoked']} {files['typo']}")

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{files['live']}:3: {rules.display_prefix(live)}...  LIVE key of this installation (id {live_id}): revoke it",
        f"{files['revoked']}:1: {rules.display_prefix(revoked)}...  not a live key of this installation",
    ]
    for key in (live, revoked):
        assert key not in result.stdout + result.stderr


def test_keys_scan_of_a_clean_tree_exits_0(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("KEY = os.environ['QV_KEY']  # qv_pk_ goes in the environment\n")
    result = ok(cli(f"keys scan {tmp_path}"))
    assert result.stdout == ""
    assert "No QuickVisit keys found." in result.stderr


def test_keys_scan_of_a_missing_path_is_an_error(cli: Cli, tmp_path: Path) -> None:
    result = cli(f"keys scan {tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert "does not exist" in error_message(result)


def test_keys_usage_per_range_as_json_and_every_day_as_csv(cli: Cli, demo: None, settings: Settings) -> None:
    ok(cli("keys create --org demo --name Counted --scopes read"))
    summary = named(key_list(cli), "Counted")
    now = datetime.now(UTC)
    key_hex = uuid.UUID(summary["id"]).hex
    events = [(key_hex, now.timestamp(), "GET", "/api/v1/services", 200, 3000)] * 4 + [
        (key_hex, (now - timedelta(days=10)).timestamp(), "POST", "/api/v1/reservations", 422, 1000)
    ] * 2

    async def fold() -> None:
        alchemy = create_alchemy_config(settings)
        try:
            await fold_usage(job_context(settings, alchemy), batch_id="cli", events=events)  # type: ignore[arg-type]
        finally:
            await alchemy.get_engine().dispose()

    asyncio.run(fold())
    week = json.loads(ok(cli(f"keys usage {summary['prefix']} --range 7d --json")).stdout)
    assert week["range"] == "7d" and len(week["days"]) == 7
    assert week["totals"] == {
        "success": 4,
        "client_error": 0,
        "rate_limited": 0,
        "server_error": 0,
        "total": 4,
    }
    month = json.loads(ok(cli(f"keys usage {summary['id']} --json")).stdout)
    assert month["range"] == "30d" and month["totals"]["total"] == 6 and month["totals"]["client_error"] == 2
    day = json.loads(ok(cli(f"keys usage {summary['id']} --range 24h --json")).stdout)
    assert len(day["hours"]) == 24 and day["totals"]["total"] == 4

    exported = ok(cli(f"keys usage {summary['prefix']} --csv")).stdout
    lines = exported.splitlines()
    assert lines[0] == "day,route,method,outcome,requests,mean_latency_ms"
    assert [line.split(",")[1:] for line in lines[1:]] == [
        ["/api/v1/reservations", "POST", "client_error", "2", "1.0"],
        ["/api/v1/services", "GET", "success", "4", "3.0"],
    ]
    assert "choose one of --json and --csv" in error_message(cli(f"keys usage {summary['id']} --json --csv"))


def test_webhooks_add_list_deliveries_and_remove(cli: Cli, demo: None, settings: Settings) -> None:
    added = ok(
        cli(
            "webhooks add --org demo --url http://127.0.0.1:9/hooks --events reservation.cancelled,reservation.created"
        )
    )
    lines = added.stdout.strip().splitlines()
    secret = lines[-1]
    assert secret.startswith("whsec_") and len(secret) > 40
    endpoint_id = lines[0].split()[3]
    # The demo organization has the demo website's receiver already (the seed's).
    seeded = [
        item
        for item in json.loads(ok(cli("webhooks list --org demo --json")).stdout)
        if item["url"] == DEMO_WEBHOOK_URL
    ]
    listed = [
        item for item in json.loads(ok(cli("webhooks list --org demo --json")).stdout) if item not in seeded
    ]
    assert len(seeded) == 1 and listed == [
        {
            "id": endpoint_id,
            "url": "http://127.0.0.1:9/hooks",
            "events": ["reservation.created", "reservation.cancelled"],
            "enabled": True,
            "disabled_reason": None,
            "created_at": listed[0]["created_at"],
        }
    ]
    assert secret not in ok(cli("webhooks list --org demo")).stdout
    assert ok(cli(f"webhooks deliveries {endpoint_id}")).stdout.strip() == "No deliveries yet."
    assert json.loads(ok(cli(f"webhooks deliveries {endpoint_id} --json")).stdout) == []

    refused = error_message(cli("webhooks add --org demo --url http://example.com/hooks --events nope"))
    assert "only for loopback" in refused and "Choose one or more" in refused
    assert "No organization" in error_message(
        cli("webhooks add --org nope --url https://x.test --events api_key.leaked")
    )

    removed = ok(cli(f"webhooks remove {endpoint_id}"))
    assert removed.stdout.strip() == f"Removed webhook endpoint {endpoint_id} (http://127.0.0.1:9/hooks)."
    assert json.loads(ok(cli("webhooks list --org demo --json")).stdout) == seeded
    assert "No webhook endpoint" in error_message(cli(f"webhooks remove {endpoint_id}"))
    assert "not an endpoint id" in error_message(cli("webhooks deliveries nope"))
