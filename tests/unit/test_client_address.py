"""Resolving the client's address behind TRUSTED_PROXIES: the rule uvicorn applies, so both agree."""

from __future__ import annotations

from typing import Any

import pytest

from app.lib.client_address import TrustedProxiesMiddleware, resolve_client_host
from app.settings import parse_trusted_proxies

LOOPBACK = parse_trusted_proxies("127.0.0.1")
PROXIES = parse_trusted_proxies("10.0.0.0/8,192.0.2.7")


def test_nobody_is_trusted_by_default() -> None:
    assert resolve_client_host("127.0.0.1", ["6.6.6.6"], ()) == "127.0.0.1"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert resolve_client_host("203.0.113.9", ["6.6.6.6"], LOOPBACK) == "203.0.113.9"


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        (["198.51.100.4"], "198.51.100.4"),
        # Whatever the client wrote to the left of what our proxies added proves nothing.
        (["6.6.6.6, 198.51.100.4"], "198.51.100.4"),
        (["6.6.6.6, 198.51.100.4, 10.1.2.3"], "198.51.100.4"),
        (["6.6.6.6", "198.51.100.4, 10.1.2.3"], "198.51.100.4"),  # repeated headers are one list
        (["2001:db8::1"], "2001:db8::1"),
        # Only proxies on the way: the farthest of them.
        (["10.9.9.9, 10.1.2.3"], "10.9.9.9"),
        # Garbage is not believed: the nearest hop that is an address.
        (["not-an-address"], "10.0.0.1"),
        (["6.6.6.6, <script>, 10.1.2.3"], "10.1.2.3"),
        ([], "10.0.0.1"),
    ],
)
def test_forwarded_for_is_read_from_the_right_behind_trusted_proxies(
    forwarded_for: list[str], expected: str
) -> None:
    assert resolve_client_host("10.0.0.1", forwarded_for, PROXIES) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_middleware_rewrites_client_and_scheme_only_from_a_trusted_peer() -> None:
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["client"], scope["scheme"]))

    middleware = TrustedProxiesMiddleware(app, PROXIES)  # type: ignore[arg-type]
    headers = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.4"), (b"x-forwarded-proto", b"https")]
    for peer in ("10.0.0.1", "127.0.0.1"):
        scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
        await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == [(("198.51.100.4", 0), "https"), (("127.0.0.1", 5000), "http")]
