"""What the domain refuses, in its own words: each error carries a stable `code` and a `detail` for people.

No HTTP here: the Public Booking API maps each of these to its status and RFC 9457 body, in one place
(problems.py there).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

INVALID_FIELDS = "The request has invalid fields."


class FieldError(msgspec.Struct):
    """What is wrong with one field; `pointer` is a JSON pointer into the request (`/customer/email`)."""

    pointer: str
    detail: str


class DomainError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFound(DomainError):
    """No such item, or not the caller's: the two are never told apart."""

    def __init__(self, detail: str) -> None:
        super().__init__("not_found", detail)


class InvalidFields(DomainError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("validation_error", INVALID_FIELDS)
        self.errors = list(errors)

    def __str__(self) -> str:
        """Each field and what is wrong with it, on one line (the CLI's `fails_on` prints it)."""
        return " ".join(f"{error.pointer.lstrip('/')}: {error.detail}" for error in self.errors)


class BookingRefused(DomainError):
    """The booking rules refuse this slot (`slot_unavailable`, `too_late_to_book`, ...)."""

    def __init__(self, code: str, detail: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(code, detail)
        self.extra = extra or {}


class IdempotencyKeyRejected(DomainError):
    """The Idempotency-Key is missing or malformed (`idempotency_key_missing`, `idempotency_key_invalid`)."""


class IdempotencyKeyReused(DomainError):
    """The key already belongs to a different request."""

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request. Use a new key for a new request.",
        )


class IdempotencyKeyInProgress(DomainError):
    """The first request with this key is still running, or ended abnormally (a crash) less than the claim's
    lease ago; a retry shortly after gets its answer, or runs afresh once the lease is over."""

    retry_after_seconds = 1

    def __init__(self) -> None:
        super().__init__(
            "idempotency_request_in_progress",
            "A request with this Idempotency-Key is still being processed, or stopped abnormally within the "
            "last few seconds. Retry shortly.",
        )


class KeyRejected(DomainError):
    """An API key the Public Booking API does not accept (missing, malformed, unknown, revoked, expired).

    `key_id` names the key when it exists (revoked, expired): its refused requests count in its usage."""

    def __init__(self, code: str, detail: str, key_id: uuid.UUID | None = None) -> None:
        super().__init__(code, detail)
        self.key_id = key_id


class InvalidReport(DomainError):
    """A secret-scanning report that is not a JSON array of token objects (`invalid_report`), or holds too many
    tokens (`too_many_tokens`)."""


class ReportTooLarge(InvalidReport):
    def __init__(self, detail: str) -> None:
        super().__init__("payload_too_large", detail)


class CancellationRefused(DomainError):
    """The reservation can no longer be cancelled this way: it has started (`reservation_started`), or the
    customer's own link is inside the service's cancellation notice (`within_cancellation_notice`)."""
