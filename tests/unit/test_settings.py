"""`Settings.from_env`: defaults, URL normalization and the refusals that keep a misconfigured app from starting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError

SECRET = "s" * 32
PRODUCTION_REDIS = "redis://cache.internal:6379/0"


def test_defaults_for_development(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})

    assert settings.app_env == "dev"
    assert not settings.is_production
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    assert settings.is_sqlite
    assert settings.redis_url == f"unix://{(tmp_path / 'valkey.sock').resolve()}"
    assert settings.embedded_redis is True
    assert settings.port == 8000
    assert settings.data_dir == tmp_path


def test_blank_values_fall_back_to_the_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "APP_ENV": " ", "PORT": "", "DATABASE_URL": " ", "REDIS_URL": " "}
    )
    assert settings.app_env == "dev"
    assert settings.port == 8000
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    assert settings.embedded_redis is True


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://app:pw@db.internal:5432/booking",
            "postgresql+asyncpg://app:pw@db.internal:5432/booking",
        ),
        ("postgresql://app:pw@db.internal/booking", "postgresql+asyncpg://app:pw@db.internal/booking"),
        ("sqlite:////var/lib/booking/app.db", "sqlite+aiosqlite:////var/lib/booking/app.db"),
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        # Already async: left alone.
        ("postgresql+asyncpg://app@db/booking", "postgresql+asyncpg://app@db/booking"),
        ("sqlite+aiosqlite:///already.db", "sqlite+aiosqlite:///already.db"),
    ],
)
def test_database_url_is_mapped_onto_the_async_drivers(tmp_path: Path, given: str, expected: str) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "DATABASE_URL": given})
    assert settings.database_url == expected
    assert settings.is_sqlite == expected.startswith("sqlite")


def test_given_redis_url_is_used_and_nothing_is_embedded(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "REDIS_URL": "redis://localhost:6380/2"})
    assert settings.redis_url == "redis://localhost:6380/2"
    assert settings.embedded_redis is False


def test_production_with_everything_given(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "APP_ENV": "production",
            "DATA_DIR": str(tmp_path),
            "SECRET_KEY": SECRET,
            "REDIS_URL": PRODUCTION_REDIS,
            "DATABASE_URL": "postgres://app@db/booking",
            "PORT": "8080",
        }
    )
    assert settings.is_production
    assert settings.secret_key == SECRET
    assert settings.redis_url == PRODUCTION_REDIS
    assert settings.embedded_redis is False
    assert settings.database_url == "postgresql+asyncpg://app@db/booking"
    assert settings.port == 8080
    # Production never generates (or writes) a secret of its own.
    assert not (tmp_path / "secret_key").exists()


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY is required"):
        Settings.from_env({"APP_ENV": "production", "DATA_DIR": str(tmp_path), "REDIS_URL": PRODUCTION_REDIS})
    assert not (tmp_path / "secret_key").exists()


def test_production_requires_a_redis_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL is required"):
        Settings.from_env({"APP_ENV": "production", "DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET})


@pytest.mark.parametrize("app_env", ["dev", "production"])
def test_short_secret_key_is_rejected(tmp_path: Path, app_env: str) -> None:
    env = {
        "APP_ENV": app_env,
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": "s" * 31,
        "REDIS_URL": PRODUCTION_REDIS,
    }
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings.from_env(env)


@pytest.mark.parametrize("app_env", ["prod", "Production", "test", "staging"])
def test_unknown_app_env_is_rejected(tmp_path: Path, app_env: str) -> None:
    with pytest.raises(SettingsError, match="APP_ENV must be 'dev' or 'production'"):
        Settings.from_env({"APP_ENV": app_env, "DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET})


@pytest.mark.parametrize("port", ["0", "65536", "-1", "eighty", "80.5", "99999999"])
def test_bad_port_is_rejected(tmp_path: Path, port: str) -> None:
    with pytest.raises(SettingsError, match="PORT must be a TCP port number"):
        Settings.from_env({"PORT": port, "DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET})


@pytest.mark.parametrize("port", ["1", "65535"])
def test_port_range_ends_are_accepted(tmp_path: Path, port: str) -> None:
    assert Settings.from_env({"PORT": port, "DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET}).port == int(
        port
    )


def test_development_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-yet-created"
    first = Settings.from_env({"DATA_DIR": str(data_dir)})

    path = data_dir / "secret_key"
    assert path.read_text() == first.secret_key
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = Settings.from_env({"DATA_DIR": str(data_dir)})
    assert second.secret_key == first.secret_key
    assert path.read_text() == first.secret_key


def test_given_secret_key_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "SECRET_KEY": f"  {SECRET}  "})
    assert settings.secret_key == SECRET
    assert not (tmp_path / "secret_key").exists()


def test_new_hardening_settings_default_to_the_safe_side(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert settings.trusted_proxies == ()
    assert settings.forwarded_allow_ips == ""
    assert settings.access_log is False
    assert settings.session_idle_minutes == 60


def test_trusted_proxies_are_read_as_addresses_and_networks(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,"}
    )
    assert [str(network) for network in settings.trusted_proxies] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]
    assert settings.forwarded_allow_ips == "10.0.0.0/8,192.0.2.7/32,2001:db8::/32"


@pytest.mark.parametrize("value", ["*", "localhost", "10.0.0.0/33", "1.2.3"])
def test_unreadable_trusted_proxies_stop_the_app(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES must list IP addresses"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": value})


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_access_log_is_a_switch(tmp_path: Path, value: str, expected: bool) -> None:
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "ACCESS_LOG": value}).access_log is expected


@pytest.mark.parametrize("value", ["0", "721", "ten", "-5"])
def test_session_idle_minutes_must_fit_in_the_lifetime(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="SESSION_IDLE_MINUTES"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "SESSION_IDLE_MINUTES": value})


def test_github_secret_scanning_keys_come_from_githubs_url_unless_a_file_is_given(tmp_path: Path) -> None:
    default = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert (
        default.github_secret_scanning_keys_url == "https://api.github.com/meta/public_keys/secret_scanning"
    )
    assert default.github_secret_scanning_keys_file is None

    given = Settings.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "GITHUB_SECRET_SCANNING_KEYS_URL": "https://github.example/meta/public_keys/secret_scanning",
            "GITHUB_SECRET_SCANNING_KEYS_FILE": str(tmp_path / "keys.json"),
        }
    )
    assert given.github_secret_scanning_keys_url == "https://github.example/meta/public_keys/secret_scanning"
    assert given.github_secret_scanning_keys_file == tmp_path / "keys.json"


def test_a_keys_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GITHUB_SECRET_SCANNING_KEYS_URL"):
        Settings.from_env(
            {"DATA_DIR": str(tmp_path), "GITHUB_SECRET_SCANNING_KEYS_URL": "file:///etc/passwd"}
        )


def test_web_concurrency_defaults_to_the_cpu_count(tmp_path: Path) -> None:
    assert Settings.from_env({"DATA_DIR": str(tmp_path)}).web_concurrency == (os.cpu_count() or 1)
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "WEB_CONCURRENCY": "3"}).web_concurrency == 3


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_unreadable_web_concurrency_stops_the_app(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="WEB_CONCURRENCY"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "WEB_CONCURRENCY": value})


def test_usage_retention_per_table(tmp_path: Path) -> None:
    defaults = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert (
        defaults.usage_minute_retention_days,
        defaults.usage_hourly_retention_days,
        defaults.usage_daily_retention_months,
    ) == (7, 90, 13)
    chosen = Settings.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "USAGE_MINUTE_RETENTION_DAYS": "3",
            "USAGE_HOURLY_RETENTION_DAYS": "30",
            "USAGE_DAILY_RETENTION_MONTHS": "24",
        }
    )
    assert (
        chosen.usage_minute_retention_days,
        chosen.usage_hourly_retention_days,
        chosen.usage_daily_retention_months,
    ) == (3, 30, 24)
    for name, value in (
        ("USAGE_MINUTE_RETENTION_DAYS", "0"),
        ("USAGE_HOURLY_RETENTION_DAYS", "ninety"),
        ("USAGE_DAILY_RETENTION_MONTHS", "-1"),
    ):
        with pytest.raises(SettingsError, match=f"{name} must be a whole number"):
            Settings.from_env({"DATA_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("https://book.example.com", "https://book.example.com"),
        (" https://book.example.com/ ", "https://book.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_the_public_url_is_an_origin(tmp_path: Path, value: str, expected: str | None) -> None:
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "PUBLIC_URL": value}).public_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "book.example.com",
        "ftp://book.example.com",
        "https://",
        "https://book.example.com/app",
        "https://book.example.com?x=1",
        "https://book.example.com/#top",
        "https://user@book.example.com",
        "https://book.example.com:99999",
    ],
)
def test_a_public_url_that_is_not_an_origin_stops_the_app(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="PUBLIC_URL must be an origin"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "PUBLIC_URL": value})
