"""Configuration: read once from the environment into one typed object."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data"


class SettingsError(RuntimeError):
    """The environment does not describe a runnable app."""


@dataclass(frozen=True, slots=True)
class Settings:
    app_env: Literal["dev", "production"]
    database_url: str
    redis_url: str
    embedded_redis: bool
    secret_key: str
    port: int
    data_dir: Path
    usage_retention_days: int = 90

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        app_env = env.get("APP_ENV", "dev").strip() or "dev"
        if app_env not in ("dev", "production"):
            raise SettingsError(f"APP_ENV must be 'dev' or 'production', not {app_env!r}")
        data_dir = Path(env.get("DATA_DIR") or DEFAULT_DATA_DIR)
        port_text = env.get("PORT", "8000").strip() or "8000"
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise SettingsError(f"PORT must be a TCP port number, not {port_text!r}")
        secret_key = env.get("SECRET_KEY", "").strip()
        if not secret_key:
            if app_env == "production":
                raise SettingsError("SECRET_KEY is required when APP_ENV=production")
            secret_key = _dev_secret_key(data_dir)
        elif len(secret_key) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters")
        retention_text = env.get("USAGE_RETENTION_DAYS", "90").strip() or "90"
        if not (retention_text.isascii() and retention_text.isdigit()) or int(retention_text) < 1:
            raise SettingsError(
                f"USAGE_RETENTION_DAYS must be a whole number of days, not {retention_text!r}"
            )
        redis_url = env.get("REDIS_URL", "").strip()
        if not redis_url and app_env == "production":
            raise SettingsError("REDIS_URL is required when APP_ENV=production")
        return cls(
            app_env="production" if app_env == "production" else "dev",
            database_url=normalize_database_url(env.get("DATABASE_URL", "").strip(), data_dir),
            redis_url=redis_url or embedded_redis_url(data_dir),
            embedded_redis=not redis_url,
            secret_key=secret_key,
            port=int(port_text),
            data_dir=data_dir,
            usage_retention_days=int(retention_text),
        )


def normalize_database_url(url: str, data_dir: Path) -> str:
    """Map the URLs people write (and hosting platforms set) onto the async drivers we ship."""
    if not url:
        return f"sqlite+aiosqlite:///{data_dir / 'app.db'}"
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def embedded_redis_url(data_dir: Path) -> str:
    """Where `make run` starts its embedded Valkey when REDIS_URL is unset: a socket every process can find."""
    return f"unix://{(data_dir / 'valkey.sock').resolve()}"


def _dev_secret_key(data_dir: Path) -> str:
    """A development secret generated once and kept, so sessions survive restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a process racing us never reads a half-written file.
        draft = data_dir / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process of `make run` won the race; use its secret
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise SettingsError(f"{path} holds no usable secret; delete it to have a new one generated")
    return key


@cache
def get_settings() -> Settings:
    return Settings.from_env()
