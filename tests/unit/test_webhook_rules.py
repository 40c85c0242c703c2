"""Webhook rules: the signature a receiver verifies, the retry schedule, and what is retried."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest

from app.domain.webhooks import rules

BODY = b'{"id":"e1","type":"test"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = rules.signature("whsec_s", 1_700_000_000, BODY)
    expected = hmac.new(b"whsec_s", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert rules.verify("whsec_s", header, BODY, now=1_700_000_010)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("whsec_other", BODY, 1_700_000_000),
        ("whsec_s", BODY + b" ", 1_700_000_000),
        ("whsec_s", BODY, 1_700_000_301),
    ],
)
def test_a_wrong_secret_a_changed_body_or_an_old_timestamp_fails(secret: str, body: bytes, now: int) -> None:
    assert not rules.verify(secret, rules.signature("whsec_s", 1_700_000_000, BODY), body, now=now)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1,t=2,v1=abc"])
def test_malformed_headers_fail(header: str) -> None:
    assert not rules.verify("whsec_s", header, BODY, now=1)


def test_secrets_differ_per_salt_and_key() -> None:
    one = rules.secret_for("k" * 32, "salt-a")
    assert one.startswith("whsec_") and len(one) > 40
    assert one == rules.secret_for("k" * 32, "salt-a")
    assert one != rules.secret_for("k" * 32, "salt-b") != rules.secret_for("j" * 32, "salt-a")


def test_retries_back_off_with_jitter_and_stop_after_24_hours() -> None:
    event_at = datetime(2030, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    waits = []
    now = event_at
    attempts = 0
    while (at := rules.next_attempt(event_at, now, attempts + 1, rng)) is not None:
        waits.append(at - now)
        now, attempts = at, attempts + 1
    assert timedelta(seconds=15) <= waits[0] <= timedelta(seconds=30)
    assert waits[3] > waits[0] and max(waits) <= rules.LONGEST_WAIT
    assert now <= event_at + rules.RETRY_FOR and 10 < attempts < 40
    jittered = {rules.next_attempt(event_at, event_at, 3, random.Random(seed)) for seed in range(5)}
    assert len(jittered) == 5


@pytest.mark.parametrize(
    ("status", "retry"),
    [(None, True), (500, True), (503, True), (429, True), (400, False), (404, False), (301, False)],
)
def test_what_is_retried(status: int | None, retry: bool) -> None:
    assert rules.is_retryable(status) is retry


def test_public_addresses_pass() -> None:
    assert rules.refused_addresses(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]) == []
    assert rules.refused_addresses(["93.184.216.34", "10.0.0.1"]) == ["10.0.0.1"]
