"""Idempotency-Key rules: acceptable keys, request fingerprints, and what a request with a known key does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.api.v1.schemas import ReservationIn
from app.domain.booking.idempotency import KeyProblem, RecordView, decide, fingerprint, parse_key

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),  # the IETF draft's structured-field string
        ("  spaced  ", "spaced"),
        ("a", "a"),
        ("k" * 255, "k" * 255),
        ("order 42 / retry", "order 42 / retry"),
    ],
)
def test_acceptable_keys(header: str, key: str) -> None:
    assert parse_key(header) == key


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "idempotency_key_missing"),
        ("", "idempotency_key_missing"),
        ("   ", "idempotency_key_missing"),
        ("k" * 256, "idempotency_key_invalid"),
        ('""', "idempotency_key_invalid"),
        ("tab\there", "idempotency_key_invalid"),
        ("clé", "idempotency_key_invalid"),
    ],
)
def test_unacceptable_keys(header: str | None, code: str) -> None:
    problem = parse_key(header)
    assert isinstance(problem, KeyProblem)
    assert problem.code == code and "Idempotency-Key" in problem.detail


def canonical(text: str) -> bytes:
    return msgspec.json.decode(text, type=ReservationIn).canonical()


def test_fingerprint_ignores_key_order_whitespace_and_spelt_out_defaults() -> None:
    service = "0190f1d2-0000-7000-8000-000000000001"
    customer = '"customer": {"name": "Ada", "email": "ada@example.com"}'
    one = canonical(f'{{"service_id": "{service}", "start": "2030-03-04T10:00:00+00:00", {customer}}}')
    two = canonical(
        f'{{ {customer}, "party_size": 1,\n "start": "2030-03-04T10:00:00+00:00", "service_id": "{service}"}}'
    )
    assert fingerprint("POST", "/api/v1/reservations", one) == fingerprint(
        "POST", "/api/v1/reservations", two
    )
    other = canonical(f'{{"service_id": "{service}", "start": "2030-03-04T10:30:00+00:00", {customer}}}')
    assert fingerprint("POST", "/api/v1/reservations", one) != fingerprint(
        "POST", "/api/v1/reservations", other
    )
    assert fingerprint("POST", "/api/v1/reservations", one) != fingerprint("POST", "/api/v1/other", one)
    # Parts are length-prefixed: moving bytes between path and body changes the fingerprint.
    assert fingerprint("POST", "/a", b"bc") != fingerprint("POST", "/ab", b"c")
    assert len(fingerprint("POST", "/", b"")) == 64


def record(
    state: str = "completed", fp: str = "abc", expires_in: timedelta = timedelta(hours=1)
) -> RecordView:
    return RecordView(fingerprint=fp, state=state, expires_at=NOW + expires_in)  # type: ignore[arg-type]


def test_decisions() -> None:
    assert decide(None, "abc", NOW) == "claim"
    assert decide(record(), "abc", NOW) == "replay"
    assert decide(record(), "xyz", NOW) == "reused"
    assert decide(record("in_flight"), "abc", NOW) == "in_progress"
    assert decide(record("in_flight"), "xyz", NOW) == "reused"
    # Expired: a completed answer after 24 hours, a claim after its lease (its request died).
    assert decide(record(expires_in=timedelta(0)), "xyz", NOW) == "claim"
    assert decide(record("in_flight", expires_in=-timedelta(seconds=1)), "abc", NOW) == "claim"
