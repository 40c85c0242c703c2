"""Idempotency-Key rules: which keys are acceptable, what counts as "the same request", and what to do with it.

Pure functions only (no I/O). The records themselves live in `IdempotencyRecord`; `reservations.py` stores them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

HEADER: Final = "Idempotency-Key"
KEY_MAX_LENGTH: Final = 255
# How long a completed request is remembered (and replayed) for the same key.
RETENTION: Final = timedelta(hours=24)
# How long an in-flight claim holds a key. The claim is made in the booking's own transaction (reservations.py),
# so a live claim is only seen by a request waiting on it, which then reads the completed record; a committed
# in-flight record (left by a process that booked in two transactions) is honoured until its lease ends.
LEASE: Final = timedelta(seconds=15)

State = Literal["in_flight", "completed"]
Decision = Literal["claim", "replay", "reused", "in_progress"]


@dataclass(frozen=True, slots=True)
class KeyProblem:
    code: Literal["idempotency_key_missing", "idempotency_key_invalid"]
    detail: str


def parse_key(value: str | None) -> str | KeyProblem:
    """The key a header value carries, or what is wrong with it.

    The IETF draft sends the key as a structured-field string, quotes and all; plain values are accepted too.
    """
    if value is None or not value.strip():
        return KeyProblem(
            "idempotency_key_missing",
            f"Send an {HEADER} header (a UUID is a good choice) to make this request safe to retry.",
        )
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= KEY_MAX_LENGTH:
        return KeyProblem(
            "idempotency_key_invalid", f"The {HEADER} must be 1 to {KEY_MAX_LENGTH} characters long."
        )
    if not all(" " <= char <= "~" for char in key):
        return KeyProblem(
            "idempotency_key_invalid", f"The {HEADER} may only contain printable ASCII characters."
        )
    return key


def fingerprint(method: str, path: str, canonical_body: bytes) -> str:
    """SHA-256 of what makes two requests "the same": method, path and the body in canonical JSON."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical_body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed, so parts cannot bleed into each other
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class RecordView:
    """What the decision needs to know about a stored record."""

    fingerprint: str
    state: State
    expires_at: datetime


def decide(record: RecordView | None, request_fingerprint: str, now: datetime) -> Decision:
    """What a request carrying a key should do, given the key's record (None: never seen).

    An expired record is as good as none: a completed one after its retention, an in-flight one after its
    lease (its request died; the fencing token keeps it from ever completing).
    """
    if record is None or record.expires_at <= now:
        return "claim"
    if record.fingerprint != request_fingerprint:
        return "reused"
    if record.state == "in_flight":
        return "in_progress"
    return "replay"
