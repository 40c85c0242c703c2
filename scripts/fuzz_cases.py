"""The fuzzing leg's hand-written cases: hostile inputs that once gave 5xx or non-problem answers (issue 21),
sent to the running product. Each must get its documented 4xx; the run fails on any other answer.

Usage: python scripts/fuzz_cases.py BASE_URL API_KEY SERVER_LOG
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ORIGIN = "https://fuzz.example"
DEEP = 100_000
Check = Callable[[httpx.Response], str | None]


def problem(status: int, *codes: str) -> Check:
    def check(response: httpx.Response) -> str | None:
        if response.status_code != status:
            return f"status {response.status_code}, expected {status}: {response.text[:200]}"
        if response.headers.get("content-type") != "application/problem+json":
            return f"content type {response.headers.get('content-type')}"
        if response.json().get("code") not in codes:
            return f"code {response.json().get('code')}, expected one of {codes}"
        if response.headers.get("access-control-allow-origin") != ORIGIN:
            return "no CORS header for the calling origin"
        return None

    return check


def empty(status: int) -> Check:
    def check(response: httpx.Response) -> str | None:
        if response.status_code != status or response.content:
            return (
                f"status {response.status_code} with {len(response.content)} bytes, expected {status}, empty"
            )
        return None

    return check


def raw_header_refused(base_url: str, value: bytes) -> str | None:
    """A header byte the HTTP parser refuses (NUL, DEL) never reaches the app: the server answers 400 itself."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.sendall(
            b"GET /api/v1/services HTTP/1.1\r\nHost: fuzz\r\nX-API-Key: "
            + value
            + b"\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    return None if status_line.startswith(b"HTTP/1.1 400") else f"answered {status_line!r}"


def main(base_url: str, key: str, server_log: Path) -> int:
    headers = {"Authorization": f"Bearer {key}", "Origin": ORIGIN}
    failures = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        service_id = client.get("/api/v1/services").json()["data"][0]["id"]
        good = {
            "service_id": service_id,
            "start": "2030-03-04T10:00:00+00:00",
            "party_size": 1,
            "customer": {"name": "Fuzz", "email": "fuzz@example.com"},
        }

        def book(body: Any = None, content: bytes | None = None) -> httpx.Response:
            extra = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
            payload = content if content is not None else json.dumps(body).encode()
            return client.post("/api/v1/reservations", content=payload, headers=extra)

        def availability(first: str, last: str) -> httpx.Response:
            params = {"service_id": service_id, "start_date": first, "end_date": last}
            return client.get("/api/v1/availability", params=params)

        customer_nul = {"name": "Ada\x00", "email": "ada@example.com"}
        cases: list[tuple[str, Callable[[], httpx.Response], Check]] = [
            (
                "key in the query",
                lambda: client.get(f"/api/v1/services?api_key={key}"),
                problem(400, "api_key_in_query"),
            ),
            (
                "start in 9999",
                lambda: book(good | {"start": "9999-12-31T23:00:00+00:00"}),
                problem(422, "too_early_to_book"),
            ),
            (
                "start in 0001",
                lambda: book(good | {"start": "0001-01-01T00:00:00+05:00"}),
                problem(422, "validation_error"),
            ),
            (
                "start as Unix time",
                lambda: book(good | {"start": 1796000000}),
                problem(422, "validation_error"),
            ),
            (
                "party size as a string",
                lambda: book(good | {"party_size": "2"}),
                problem(422, "validation_error"),
            ),
            (
                "availability in 9999",
                lambda: availability("9999-12-30", "9999-12-31"),
                problem(422, "validation_error"),
            ),
            (
                "availability in 0001",
                lambda: availability("0001-01-01", "0001-01-02"),
                problem(422, "validation_error"),
            ),
            (
                "JSON nested 100,000 deep",
                lambda: book(content=b"[" * DEEP + b"]" * DEEP),
                problem(400, "bad_request"),
            ),
            (
                "NUL in a name",
                lambda: book(good | {"customer": customer_nul}),
                problem(422, "validation_error"),
            ),
            ("NUL in notes", lambda: book(good | {"notes": "a\x00b"}), problem(422, "validation_error")),
            (
                "NUL in a reservation id",
                lambda: client.get("/api/v1/reservations/res_%00x"),
                problem(422, "validation_error"),
            ),
            (
                "NUL in a query",
                lambda: availability("2030-03-04\x00", "2030-03-04"),
                problem(422, "validation_error"),
            ),
            (
                "an 11 MB body",
                lambda: book(content=b'{"notes": "' + b"x" * 11_000_000 + b'"}'),
                problem(413, "payload_too_large"),
            ),
            ("an unknown path", lambda: client.get("/api/v1/nothing/here"), problem(404, "not_found")),
            (
                "an unsupported method",
                lambda: client.delete("/api/v1/services"),
                problem(405, "method_not_allowed"),
            ),
            ("HEAD on a GET endpoint", lambda: client.head("/api/v1/services"), empty(200)),
        ]
        for name, send, check in cases:
            if (failure := check(send())) is not None:
                failures.append(f"{name}: {failure}")
    for name, value in (("NUL in a header", b"qv\x00pk"), ("DEL in a header", b"qv\x7fpk")):
        if (failure := raw_header_refused(base_url, value)) is not None:
            failures.append(f"{name}: {failure}")
    log = server_log.read_text(errors="replace")
    for marker in ("Traceback", "unexpected error", "database unavailable"):
        if (at := log.find(marker)) >= 0:
            failures.append(f"the server logged {marker!r}:\n" + log[max(0, at - 1000) : at + 3000])
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"fuzz cases: {len(cases) + 2 - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
