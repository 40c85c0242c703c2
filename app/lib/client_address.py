"""The client's address behind trusted proxies (TRUSTED_PROXIES), resolved once per request for everything
that reads `scope["client"]`: the sign-in throttle, the audit log.

The rule is uvicorn's (`--forwarded-allow-ips`), so a request the server already resolved comes out the same:
only when the socket peer is a trusted proxy is X-Forwarded-For read, from the right, and the first hop that is
not itself a trusted proxy is the client. Anything to its left was written by the client and proves nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def resolve_client_host(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: `peer` unless it is a trusted proxy, else the last untrusted X-Forwarded-For hop.
    A hop that is no IP address (a proxy passing garbage through) is not believed: the nearest proxy is used."""
    if not is_trusted(peer, trusted):
        return peer
    host = peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        host = hop
        if not is_trusted(hop, trusted):
            break
    return host


class TrustedProxiesMiddleware:
    """Rewrites `scope["client"]` (and the scheme a trusted proxy reports) before anything reads them."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        kind = scope["type"]
        if kind in (ScopeType.HTTP, ScopeType.WEBSOCKET) and client and is_trusted(client[0], self.trusted):
            forwarded_for: list[str] = []
            proto = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
            host = resolve_client_host(client[0], forwarded_for, self.trusted)
            if host != client[0]:
                scope["client"] = (host, 0)
            if proto in ("http", "https") and kind == ScopeType.HTTP:
                scope["scheme"] = proto
        await self.app(scope, receive, send)
