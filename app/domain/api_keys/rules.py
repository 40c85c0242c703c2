"""API key rules: key format, origin allow-lists and key request validation.

Pure functions only (no I/O), shared by the web app, the CLI and the Public Booking API.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from app.lib.ids import BASE62_ALPHABET, random_base62

KEY_PREFIX: Final = "qv_pk_"
RANDOM_LENGTH: Final = 32
CHECKSUM_LENGTH: Final = 6
KEY_LENGTH: Final = len(KEY_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
DISPLAY_RANDOM_CHARS: Final = 8

SCOPES: Final[tuple[str, ...]] = ("read", "write")

RATE_LIMIT_MIN: Final = 1
RATE_LIMIT_MAX: Final = 1000
RATE_LIMIT_DEFAULT: Final = 60

NAME_MAX_LENGTH: Final = 100

# None ("never") is also allowed; it is not listed here because it is not a number of days.
EXPIRATION_DAYS_CHOICES: Final[tuple[int, ...]] = (30, 90, 365)

KeyStatus = Literal["active", "revoked", "expired"]

_CHECKED_LENGTH: Final = len(KEY_PREFIX) + RANDOM_LENGTH
_DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}
_HOSTNAME_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOSTNAME_MAX_LENGTH: Final = 253
_ORIGIN_SEPARATORS: Final = re.compile(r"[,\r\n]")

_SCOPE_LABELS: Final[dict[str, str]] = {"read": "Read", "write": "Write"}
_NAME_REQUIRED: Final = "Name is required."
_NAME_TOO_LONG: Final = f"Name must be at most {NAME_MAX_LENGTH} characters."
_NAME_NUL: Final = "Name must not contain NUL characters."
_SCOPES_REQUIRED: Final = "Select at least one scope: Read or Write."
_RATE_LIMIT_INVALID: Final = (
    f"Rate limit must be a whole number between {RATE_LIMIT_MIN} and {RATE_LIMIT_MAX} requests per minute."
)
_EXPIRATION_INVALID: Final = "Expiration must be Never, 30, 90 or 365 days."
_EXPIRY_DATE_INVALID: Final = "Enter the expiry date as YYYY-MM-DD, like 2027-01-31."
_EXPIRY_DATE_PAST: Final = "The expiry date must be after today."
_EXPIRY_DATE_FAR: Final = "The expiry date must be at most 5 years from today."

# A custom expiry date lies from tomorrow to this many days ahead.
CUSTOM_EXPIRY_MAX_DAYS: Final = 5 * 365
# The expiration field's values besides numbers of days.
EXPIRY_NEVER: Final = "never"
EXPIRY_CUSTOM: Final = "custom"
EXPIRY_KEEP: Final = "keep"  # editing a key: leave its expiry as it is

# How long a rolled key's previous secret keeps working; the page offers GRACE_CHOICES, the CLI any
# duration up to GRACE_MAX.
GRACE_MAX: Final = timedelta(days=7)
GRACE_CHOICES: Final[tuple[tuple[str, str], ...]] = (
    ("0", "Now"),
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
)
_GRACE_UNITS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GRACE_INVALID: Final = "Grace must be 0 or a duration such as 30s, 15m, 1h, 24h or 7d, at most 7 days."
# Within this long of its expiry a key's expiry shows as soon (amber).
EXPIRY_SOON: Final = timedelta(days=7)


# --- Keys -------------------------------------------------------------------------------------------


def _base62(number: int, width: int) -> str:
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, BASE62_ALPHABET[0])


def checksum(text: str) -> str:
    """Base62 CRC32 of ``text`` (the ``qv_pk_`` + random part of a key), 6 characters."""
    # 62**6 > 2**32, so six digits always hold a CRC32.
    return _base62(zlib.crc32(text.encode("utf-8")), CHECKSUM_LENGTH)


def generate_key() -> str:
    """A new random key: ``qv_pk_`` + 32 base62 characters + 6-character checksum."""
    random_part = random_base62(RANDOM_LENGTH)
    body = KEY_PREFIX + random_part
    return body + checksum(body)


def is_well_formed(key: str) -> bool:
    """Whether ``key`` has the key format and a matching checksum (no database lookup)."""
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return False
    rest = key[len(KEY_PREFIX) :]
    # For ASCII text, isalnum() is exactly [0-9A-Za-z], and both checks run in C.
    if not (rest.isascii() and rest.isalnum()):
        return False
    return checksum(key[:_CHECKED_LENGTH]) == key[_CHECKED_LENGTH:]


def hash_key(key: str) -> str:
    """SHA-256 hex digest of the full key; only this is stored."""
    # Keys carry 190 bits of randomness, so a fast unsalted hash is enough (no password hashing).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown again, e.g. ``qv_pk_abc12345``."""
    return key[: len(KEY_PREFIX) + DISPLAY_RANDOM_CHARS]


# A key or any piece of one longer than the prefix: a key cut short is still most of a secret.
_KEY_SHAPED: Final = re.compile(re.escape(KEY_PREFIX) + r"[0-9A-Za-z]+")


def mask_keys(text: str) -> str:
    """``text`` with each key-shaped part cut to its display prefix and ``...`` (for logs)."""
    if KEY_PREFIX not in text:
        return text
    return _KEY_SHAPED.sub(lambda match: display_prefix(match.group()) + "...", text)


# --- Origins ----------------------------------------------------------------------------------------


class InvalidOrigin(ValueError):
    """An allowed origin that is not a plain ``scheme://host[:port]``; the message says why."""


def _normalize_host(host: str) -> str | None:
    """Lower-cased host, or None when it is not a hostname, IPv4 address or bracketed IPv6 address."""
    if host.startswith("["):
        inner = host[1:-1]
        # Zone IDs never appear in a browser's Origin header.
        if not host.endswith("]") or "%" in inner:
            return None
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        # Browsers send IPv6 hosts in compressed form, so match that.
        return f"[{address.compressed}]"

    host = host.lower()
    if not host.isascii() or len(host) > _HOSTNAME_MAX_LENGTH:
        return None
    labels = host.split(".")
    if labels[-1].isdigit():
        # Browsers parse a host ending in a number as IPv4, so it must be a valid one.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None
        return host
    if all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        return host
    return None


def _origin_from(text: str, scheme: str, host_port: str) -> str:
    """Validate the ``host[:port]`` part and build the normalized origin."""
    port_text: str | None
    if host_port.startswith("["):
        close = host_port.find("]")
        after = host_port[close + 1 :] if close >= 0 else ""
        if close < 0 or (after and not after.startswith(":")):
            raise InvalidOrigin(f'"{text}" has an invalid IPv6 host "{host_port}"; use brackets, like [::1]')
        host = host_port[: close + 1]
        port_text = after[1:] if after else None
    elif host_port.count(":") > 1:
        raise InvalidOrigin(
            f'"{text}" has an invalid host "{host_port}"; put IPv6 addresses in brackets, like [::1]'
        )
    else:
        host, colon, after_colon = host_port.partition(":")
        port_text = after_colon if colon else None

    if not host:
        raise InvalidOrigin(f'"{text}" has no host; an origin looks like https://example.com')
    normalized_host = _normalize_host(host)
    if normalized_host is None:
        raise InvalidOrigin(
            f'"{text}" has an invalid host "{host}"; '
            "use a domain name, an IPv4 address or a bracketed IPv6 address"
        )

    if port_text is None:
        return f"{scheme}://{normalized_host}"
    # The length cap keeps int() away from huge digit strings.
    if not (port_text.isascii() and port_text.isdigit() and len(port_text.lstrip("0")) <= 5):
        port = 0
    else:
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidOrigin(f'"{text}" has an invalid port "{port_text}"; use a number from 1 to 65535')
    # Browsers leave the default port out of the Origin header.
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{normalized_host}"
    return f"{scheme}://{normalized_host}:{port}"


def _suggestion(text: str, scheme: str, host_port: str) -> str:
    try:
        return f" ({_origin_from(text, scheme, host_port)})"
    except InvalidOrigin:
        return ""


def normalize_origin(value: str) -> str:
    """Normalize an origin such as ``https://Example.com:443/`` to ``https://example.com``.

    Raises InvalidOrigin, with a message naming the value and saying what is wrong.
    """
    text = value.strip()
    if not text:
        raise InvalidOrigin("The origin is empty; an origin looks like https://example.com")
    if "*" in text:
        raise InvalidOrigin(
            f'"{text}" contains a wildcard (*); list each origin in full, like https://app.example.com'
        )

    scheme, separator, rest = text.partition("://")
    if not separator:
        if text.lower().startswith(("http:", "https:")):
            raise InvalidOrigin(
                f'"{text}" is missing "//" after the scheme; write it like https://example.com'
            )
        raise InvalidOrigin(f'"{text}" has no scheme; add https:// in front (https://{text.lstrip("/")})')
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidOrigin(f'"{text}" uses {scheme}:; an origin must start with https:// or http://')

    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    authority, tail = rest[:end], rest[end:]
    _userinfo, at_sign, host_port = authority.rpartition("@")

    if at_sign:
        raise InvalidOrigin(
            f'"{text}" contains a user name or password; an origin is only scheme, host and port'
            + _suggestion(text, scheme, host_port)
        )
    query_at, fragment_at = tail.find("?"), tail.find("#")
    if query_at >= 0 or fragment_at >= 0:
        part = "query" if query_at >= 0 and (fragment_at < 0 or query_at < fragment_at) else "fragment"
        raise InvalidOrigin(
            f'"{text}" has a {part}; an origin is only scheme, host and port'
            + _suggestion(text, scheme, host_port)
        )
    if tail not in ("", "/"):
        raise InvalidOrigin(
            f'"{text}" has a path; an origin is only scheme, host and port'
            + _suggestion(text, scheme, host_port)
        )
    return _origin_from(text, scheme, host_port)


def parse_origins(text: str) -> tuple[str, ...]:
    """Normalize a comma-separated origin list; blanks are skipped and duplicates dropped, in order."""
    # Line breaks count as separators too, for origins pasted one per line.
    origins: dict[str, None] = {}
    for item in _ORIGIN_SEPARATORS.split(text):
        if item.strip():
            origins.setdefault(normalize_origin(item))
    return tuple(origins)


# --- Key requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRequest:
    """A validated request to create an API key."""

    name: str
    scopes: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    rate_limit_per_minute: int
    expires_in_days: int | None
    # A custom date instead of a number of days: the key expires at the end of that day in the
    # organization's time zone.
    expires_on: date | None = None
    # Editing a key: its expiry stays as it is (expires_in_days and expires_on are then None).
    keep_expiry: bool = False


class InvalidKeyRequest(ValueError):
    """A key request with one or more invalid fields; ``errors`` maps field name to message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors: dict[str, str] = dict(errors)
        super().__init__(" ".join(self.errors.values()))


def _whole_number(value: str | int) -> int | None:
    # bool is an int subclass, but True is not a rate limit or a number of days.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 9:
        return None
    return int(text)


def _validate_scopes(scopes: Iterable[str]) -> tuple[tuple[str, ...], str | None]:
    chosen: set[str] = set()
    unknown: list[str] = []
    for scope in scopes:
        cleaned = scope.strip().lower()
        if cleaned in SCOPES:
            chosen.add(cleaned)
        elif cleaned and scope not in unknown:
            unknown.append(scope)
    if unknown:
        names = ", ".join(f'"{scope}"' for scope in unknown)
        plural = "s" if len(unknown) > 1 else ""
        return (), f"Unknown scope{plural} {names}; choose Read or Write."
    if not chosen:
        return (), _SCOPES_REQUIRED
    return tuple(scope for scope in SCOPES if scope in chosen), None


def validate_key_request(
    *,
    name: str,
    scopes: Iterable[str],
    origins: str,
    rate_limit: str | int | None,
    expires_in_days: str | int | None,
    expires_on: str | date | None = None,
    today: date | None = None,
    allow_keep: bool = False,
) -> KeyRequest:
    """Validate key creation (and edit) input from the HTML form or the CLI.

    `expires_in_days` is a number of days, "never", or "custom" with the date in `expires_on` (which alone
    means "custom" too), checked against `today` in the organization's time zone. With `allow_keep`
    (editing), "keep" leaves the key's expiry as it is. Raises InvalidKeyRequest with every field error at once.
    """
    errors: dict[str, str] = {}

    clean_name = name.strip()
    if not clean_name:
        errors["name"] = _NAME_REQUIRED
    elif len(clean_name) > NAME_MAX_LENGTH:
        errors["name"] = _NAME_TOO_LONG
    elif "\x00" in clean_name:  # PostgreSQL cannot store it
        errors["name"] = _NAME_NUL

    clean_scopes, scope_error = _validate_scopes(scopes)
    if scope_error is not None:
        errors["scopes"] = scope_error

    allowed_origins: tuple[str, ...] = ()
    try:
        allowed_origins = parse_origins(origins)
    except InvalidOrigin as exc:
        errors["allowed_origins"] = str(exc)

    rate_limit_per_minute = RATE_LIMIT_DEFAULT
    if rate_limit is not None and not (isinstance(rate_limit, str) and not rate_limit.strip()):
        number = _whole_number(rate_limit)
        if number is None or not RATE_LIMIT_MIN <= number <= RATE_LIMIT_MAX:
            errors["rate_limit_per_minute"] = _RATE_LIMIT_INVALID
        else:
            rate_limit_per_minute = number

    days: int | None = None
    custom_date: date | None = None
    keep = False
    choice = expires_in_days.strip().lower() if isinstance(expires_in_days, str) else expires_in_days
    has_date = isinstance(expires_on, date) or (isinstance(expires_on, str) and bool(expires_on.strip()))
    if choice == EXPIRY_CUSTOM or (has_date and choice in (None, "")):
        custom_date, date_error = _custom_expiry_date(expires_on, today)
        if date_error is not None:
            errors["expires_on"] = date_error
    elif allow_keep and choice == EXPIRY_KEEP:
        keep = True
    elif choice is not None and choice not in ("", EXPIRY_NEVER):
        days = _whole_number(choice)
        if days not in EXPIRATION_DAYS_CHOICES:
            errors["expires_in_days"] = _EXPIRATION_INVALID
            days = None

    if errors:
        raise InvalidKeyRequest(errors)
    return KeyRequest(
        name=clean_name,
        scopes=clean_scopes,
        allowed_origins=allowed_origins,
        rate_limit_per_minute=rate_limit_per_minute,
        expires_in_days=days,
        expires_on=custom_date,
        keep_expiry=keep,
    )


def _custom_expiry_date(value: str | date | None, today: date | None) -> tuple[date | None, str | None]:
    chosen: date | None = value if isinstance(value, date) else None
    if chosen is None:
        text = value.strip() if isinstance(value, str) else ""
        try:
            chosen = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            chosen = None
        if chosen is None:
            return None, _EXPIRY_DATE_INVALID
    if today is not None:
        if chosen <= today:
            return None, _EXPIRY_DATE_PAST
        if chosen > today + timedelta(days=CUSTOM_EXPIRY_MAX_DAYS):
            return None, _EXPIRY_DATE_FAR
    return chosen, None


# --- Expiry and status ------------------------------------------------------------------------------


def expires_at_for(days: int | None, now: datetime) -> datetime | None:
    """When a key created at ``now`` expires, or None for a key that never expires."""
    if days is None:
        return None
    return now + timedelta(days=days)


def end_of_day(day: date, time_zone: str) -> datetime:
    """When a key with a custom expiry date stops working: the midnight after `day` in the time zone."""
    return datetime.combine(day + timedelta(days=1), time(), ZoneInfo(time_zone))


def requested_expiry(request: KeyRequest, now: datetime, time_zone: str) -> datetime | None:
    """The expiry a key request asks for (not for keep_expiry, which asks for no change)."""
    if request.expires_on is not None:
        return end_of_day(request.expires_on, time_zone)
    return expires_at_for(request.expires_in_days, now)


def expiry_soon(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a key expires within EXPIRY_SOON (shown in amber); False once it has expired."""
    return expires_at is not None and now < expires_at <= now + EXPIRY_SOON


def expires_in(expires_at: datetime, now: datetime) -> str:
    """'in 3 days', 'in 5 hours', 'in 10 minutes' or 'Expired': the Expires column's wording."""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "Expired"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"in {count} {unit}{'' if count == 1 else 's'}"
    return "in less than a minute"


# --- Rolling ----------------------------------------------------------------------------------------


class InvalidGrace(ValueError):
    """A grace that is not a duration of at most GRACE_MAX; the message says what is allowed."""


def parse_grace(text: str) -> timedelta:
    """`0`, `30s`, `15m`, `1h`, `24h` or `7d` (any whole number with a unit), at most 7 days."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return timedelta()
    number, unit = cleaned[:-1], cleaned[-1:]
    amount = _whole_number(number) if number else None
    if unit not in _GRACE_UNITS or amount is None:
        raise InvalidGrace(_GRACE_INVALID)
    grace = timedelta(seconds=amount * _GRACE_UNITS[unit])
    if grace > GRACE_MAX:
        raise InvalidGrace(_GRACE_INVALID)
    return grace


def previous_secret_ends_at(now: datetime, grace: timedelta, key_expires_at: datetime | None) -> datetime:
    """When a rolled key's previous secret stops working: after the grace, and never after the key itself."""
    end = now + grace
    return end if key_expires_at is None else max(now, min(end, key_expires_at))


def key_status(*, revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> KeyStatus:
    """Status of a key at ``now``; a revoked key stays revoked even after it would have expired."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
