"""Webhook rules, pure: signing, which URLs may receive events, what is retried and when.

A signature is `QuickVisit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

SIGNATURE_HEADER: Final = "QuickVisit-Signature"
EVENT_ID_HEADER: Final = "QuickVisit-Event-Id"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105  (a prefix, not a secret)
EVENT_TYPES: Final = (
    "reservation.created",
    "reservation.cancelled",
    "api_key.revoked",
    "api_key.leaked",
)
TEST_EVENT: Final = "test"
URL_MAX_LENGTH: Final = 2000
TIMEOUT_S: Final = 10.0
# Retries of timeouts, connection errors, 5xx and 429 go on this long after the event, then it has failed.
RETRY_FOR: Final = timedelta(hours=24)
FIRST_RETRY: Final = timedelta(seconds=30)
LONGEST_WAIT: Final = timedelta(hours=2)
# An endpoint whose every delivery has failed for this long is disabled.
DISABLE_AFTER: Final = timedelta(days=3)
# Longer than an attempt can take (the timeout): until then no other worker takes the delivery.
LEASE: Final = timedelta(seconds=60)


def new_salt() -> str:
    return secrets.token_hex(16)


def secret_for(secret_key: str, salt: str) -> str:
    """The endpoint's signing secret: only the app, holding SECRET_KEY, can compute it from the stored salt."""
    digest = hmac.new(secret_key.encode(), b"quickvisit webhook secret\x00" + salt.encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (docs/WEBHOOKS.md): the timestamp is recent and some v1 matches."""
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for name, value in parts if name.strip() == "t"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(value.strip(), expected) for name, value in parts if name.strip() == "v1")


def url_problem(url: str, *, production: bool) -> str | None:
    """What is wrong with an endpoint URL before any lookup, or None. In production: https only; elsewhere
    http is allowed too, to loopback addresses only."""
    if len(url) > URL_MAX_LENGTH:
        return f"Enter a URL of at most {URL_MAX_LENGTH} characters."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return "Enter a URL like https://example.com/webhooks."
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Enter a URL like https://example.com/webhooks."
    if parts.username is not None or parts.password is not None:
        return "A webhook URL may not carry a user name or password."
    if parts.scheme == "http":
        if production:
            return "Webhook URLs must use https."
        if not _is_loopback_name(parts.hostname):
            return "Plain http is only for loopback addresses (localhost, 127.0.0.1) outside production."
    return None


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refused_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses a production webhook may not be sent to: private, loopback, link-local and the like."""
    refused = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            refused.append(text)
    return refused


def is_retryable(status_code: int | None) -> bool:
    """None: a timeout or connection error."""
    return status_code is None or status_code >= 500 or status_code == 429


def next_attempt(
    event_at: datetime, now: datetime, attempts: int, rng: random.Random | None = None
) -> datetime | None:
    """When to try again after `attempts` failed tries, or None when retrying is over. Exponential, with
    jitter (a random 50-100 % of the wait) so that retries of many events do not arrive together."""
    wait = min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)
    wait *= (rng or random).uniform(0.5, 1.0)
    at = now + wait
    return at if at <= event_at + RETRY_FOR else None
