"""Configuration: read once from the environment into one typed object."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A staff session ends this long after sign-in, however active it is (SESSION_IDLE_MINUTES ends idle ones sooner).
SESSION_LIFETIME_HOURS = 12

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".data"
DEFAULT_GITHUB_PUBLIC_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"


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
    # How long usage is kept: per-minute rows, hourly and daily rollups (pruned nightly by the worker).
    usage_minute_retention_days: int = 7
    usage_hourly_retention_days: int = 90
    usage_daily_retention_months: int = 13
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed; none by default: the socket peer is the client.
    trusted_proxies: tuple[Network, ...] = ()
    # Off by default; when on, request lines are logged without their query strings.
    access_log: bool = False
    # A session ends after this long without a request, and in any case SESSION_LIFETIME_HOURS after sign-in.
    session_idle_minutes: int = 60
    # uvicorn worker processes of `python -m app.server`: WEB_CONCURRENCY, by default one per CPU.
    web_concurrency: int = 1
    # Where GitHub's secret-scanning public keys come from: the file when set (air-gapped installs, tests),
    # else the URL.
    github_secret_scanning_keys_url: str = DEFAULT_GITHUB_PUBLIC_KEYS_URL
    github_secret_scanning_keys_file: Path | None = None
    # The app's public origin (PUBLIC_URL) for the links it hands out, such as a customer's manage link; None:
    # the request's own scheme and Host.
    public_url: str | None = None

    @property
    def forwarded_allow_ips(self) -> str:
        """TRUSTED_PROXIES as uvicorn's --forwarded-allow-ips reads it."""
        return ",".join(str(network) for network in self.trusted_proxies)

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
        minute_days = _positive_whole(env, "USAGE_MINUTE_RETENTION_DAYS", 7, "days")
        hourly_days = _positive_whole(env, "USAGE_HOURLY_RETENTION_DAYS", 90, "days")
        daily_months = _positive_whole(env, "USAGE_DAILY_RETENTION_MONTHS", 13, "months")
        idle_text = env.get("SESSION_IDLE_MINUTES", "60").strip() or "60"
        if (
            not (idle_text.isascii() and idle_text.isdigit())
            or not 1 <= int(idle_text) <= SESSION_LIFETIME_HOURS * 60
        ):
            raise SettingsError(
                f"SESSION_IDLE_MINUTES must be a whole number of minutes from 1 to {SESSION_LIFETIME_HOURS * 60}"
                f" (the session lifetime), not {idle_text!r}"
            )
        concurrency_text = env.get("WEB_CONCURRENCY", "").strip() or str(os.cpu_count() or 1)
        if not (concurrency_text.isascii() and concurrency_text.isdigit()) or int(concurrency_text) < 1:
            raise SettingsError(
                f"WEB_CONCURRENCY must be a whole number of worker processes, not {concurrency_text!r}"
            )
        access_log_text = env.get("ACCESS_LOG", "").strip().lower()
        if access_log_text not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
            raise SettingsError(f"ACCESS_LOG must be 1 or 0, not {access_log_text!r}")
        redis_url = env.get("REDIS_URL", "").strip()
        if not redis_url and app_env == "production":
            raise SettingsError("REDIS_URL is required when APP_ENV=production")
        keys_url = env.get("GITHUB_SECRET_SCANNING_KEYS_URL", "").strip() or DEFAULT_GITHUB_PUBLIC_KEYS_URL
        if not keys_url.startswith(("https://", "http://")):
            raise SettingsError(f"GITHUB_SECRET_SCANNING_KEYS_URL must be an http(s) URL, not {keys_url!r}")
        keys_file = env.get("GITHUB_SECRET_SCANNING_KEYS_FILE", "").strip()
        return cls(
            app_env="production" if app_env == "production" else "dev",
            database_url=normalize_database_url(env.get("DATABASE_URL", "").strip(), data_dir),
            redis_url=redis_url or embedded_redis_url(data_dir),
            embedded_redis=not redis_url,
            secret_key=secret_key,
            port=int(port_text),
            data_dir=data_dir,
            usage_minute_retention_days=minute_days,
            usage_hourly_retention_days=hourly_days,
            usage_daily_retention_months=daily_months,
            trusted_proxies=parse_trusted_proxies(env.get("TRUSTED_PROXIES", "")),
            access_log=access_log_text in ("1", "true", "yes", "on"),
            session_idle_minutes=int(idle_text),
            web_concurrency=int(concurrency_text),
            github_secret_scanning_keys_url=keys_url,
            github_secret_scanning_keys_file=Path(keys_file) if keys_file else None,
            public_url=parse_public_url(env.get("PUBLIC_URL", "")),
        )


def _positive_whole(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    text = env.get(name, "").strip() or str(default)
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise SettingsError(f"{name} must be a whole number of {unit}, not {text!r}")
    return int(text)


def parse_public_url(text: str) -> str | None:
    """An origin, `https://book.example.com` or `http://host:port` (a trailing slash is dropped); anything more
    or less stops the app, since every link built on it would be wrong."""
    text = text.strip()
    if not text:
        return None
    problem = f"PUBLIC_URL must be an origin such as https://book.example.com, not {text!r}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise SettingsError(problem) from None
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or text.endswith(("?", "#"))
    ):
        raise SettingsError(problem)
    return f"{parts.scheme}://{parts.netloc}"


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """Comma-separated IP addresses and CIDR networks; anything else stops the app (a typo would silently
    trust nobody, or, worse, be read as something else)."""
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                f"TRUSTED_PROXIES must list IP addresses or networks (e.g. 10.0.0.0/8,192.0.2.7), not {item!r}"
            ) from None
    return tuple(networks)


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
