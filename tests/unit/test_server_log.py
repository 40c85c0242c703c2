"""The access log's request target: no query string, and nothing key-shaped beyond the display prefix."""

from __future__ import annotations

import logging

import pytest

from app.domain.api_keys.rules import display_prefix, generate_key
from app.server import RedactRequestTarget, redacted_path


def test_the_query_string_is_dropped() -> None:
    key = generate_key()
    assert redacted_path(f"/api/v1/services?api_key={key}&limit=5") == "/api/v1/services"


@pytest.mark.parametrize("cut", [0, 6, 30])
def test_a_key_in_the_path_whole_or_cut_short_keeps_only_its_display_prefix(cut: int) -> None:
    key = generate_key()
    pasted = key[: len(key) - cut]
    assert redacted_path(f"/api/v1/services/{pasted}/x") == f"/api/v1/services/{display_prefix(key)}.../x"


def test_every_key_in_a_path_is_cut_and_other_paths_are_kept() -> None:
    first, second = generate_key(), generate_key()
    assert redacted_path(f"/{first}/{second}") == f"/{display_prefix(first)}.../{display_prefix(second)}..."
    assert redacted_path("/api/v1/services/0b6c1f0e-qv_pk_") == "/api/v1/services/0b6c1f0e-qv_pk_"
    assert redacted_path("/api/v1/services") == "/api/v1/services"


def test_the_filter_rewrites_uvicorns_access_record() -> None:
    key = generate_key()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/{key}?api_key={key}", "1.1", 401),
        None,
    )
    assert RedactRequestTarget().filter(record)
    assert key not in record.getMessage()
    assert f"/api/v1/{display_prefix(key)}... HTTP/1.1" in record.getMessage()
