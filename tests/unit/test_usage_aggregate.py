"""How a batch of usage events is folded into per-minute counts, before any database is involved."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain.usage.services import aggregate, outcome_of, status_class

KEY_A = "a" * 32
KEY_B = "b" * 32
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
NOON_MINUTE = int(NOON // 60)


def test_events_of_one_minute_route_and_outcome_add_up() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON + 1, "GET", "/api/v1/services", 200, 1000),
            (KEY_A, NOON + 59.9, "GET", "/api/v1/services", 204, 500),
            (KEY_A, NOON + 60, "GET", "/api/v1/services", 200, 700),
        ]
    )
    assert folded.counts == {
        (KEY_A, NOON_MINUTE, "GET", "/api/v1/services", "2xx"): [2, 1500],
        (KEY_A, NOON_MINUTE + 1, "GET", "/api/v1/services", "2xx"): [1, 700],
    }


def test_keys_routes_methods_and_status_classes_are_counted_apart() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON, "GET", "/r", 200, 1),
            (KEY_B, NOON, "GET", "/r", 200, 1),
            (KEY_A, NOON, "POST", "/r", 201, 1),
            (KEY_A, NOON, "GET", "/other", 200, 1),
            (KEY_A, NOON, "GET", "/r", 404, 1),
            (KEY_A, NOON, "GET", "/r", 429, 1),
            (KEY_A, NOON, "GET", "/r", 403, 1),
        ]
    )
    assert sorted(
        (key, method, route, klass, n) for (key, _, method, route, klass), (n, _) in folded.counts.items()
    ) == [
        (KEY_A, "GET", "/other", "2xx", 1),
        (KEY_A, "GET", "/r", "2xx", 1),
        (KEY_A, "GET", "/r", "429", 1),
        (KEY_A, "GET", "/r", "4xx", 2),
        (KEY_A, "POST", "/r", "2xx", 1),
        (KEY_B, "GET", "/r", "2xx", 1),
    ]


def test_newest_use_per_key_whatever_the_order_of_events() -> None:
    folded = aggregate(
        [
            (KEY_A, NOON + 30, "GET", "/r", 200, 1),
            (KEY_A, NOON + 90, "GET", "/r", 200, 1),
            (KEY_A, NOON, "GET", "/r", 200, 1),
            (KEY_B, NOON - 5, "GET", "/r", 500, 1),
        ]
    )
    assert folded.newest_use == {KEY_A: NOON + 90, KEY_B: NOON - 5}


def test_rate_limited_requests_are_an_outcome_of_their_own() -> None:
    assert [status_class(s) for s in (200, 302, 401, 429, 503)] == ["2xx", "3xx", "4xx", "429", "5xx"]
    assert [outcome_of(status_class(s)) for s in (201, 304, 403, 429, 500)] == [
        "success",
        "success",
        "client_error",
        "rate_limited",
        "server_error",
    ]
