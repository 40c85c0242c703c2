"""Security headers on every response; a strict Content-Security-Policy on the staff pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.types import Message, Scope

# No inline script anywhere in the pages, the API docs' included: behaviour lives in /static/*.js.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)

# Production is served over HTTPS only: browsers that saw this once refuse plain http for a year.
HSTS = "max-age=31536000; includeSubDomains"

_BASE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
# Pages show customers' names and emails: no copy of them is kept, so Back after sign-out asks the server again.
_PAGE_ONLY = [
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
_SET_ON_PAGES = frozenset(name for name, _ in _PAGE_ONLY)

SecurityHeaders = Callable[[Message, Scope], Awaitable[None]]


def security_headers(*, production: bool) -> SecurityHeaders:
    """The before_send hook. HSTS only in production: on a development machine's plain http it would be
    ignored at best, and it would pin localhost to https for a year in browsers that honour it anyway."""
    every_response = [*_BASE, (b"strict-transport-security", HSTS.encode())] if production else list(_BASE)
    set_on_every_response = frozenset(name for name, _ in every_response)
    page = [*every_response, *_PAGE_ONLY]

    async def add_security_headers(message: Message, scope: Scope) -> None:
        """Sets the headers, replacing any a handler set. One pass over the response's headers: this runs for
        every response, the API's included (MutableScopeHeaders would scan them once per header set)."""
        if message["type"] != "http.response.start":
            return
        content_type = b""
        kept = []
        for name, value in message.get("headers", ()):
            lowered = name.lower()
            if lowered in set_on_every_response:
                continue
            if lowered == b"content-type":
                content_type = value
            kept.append((name, value))
        if not content_type.startswith(b"text/html"):
            message["headers"] = [*kept, *every_response]
            return
        message["headers"] = [*(header for header in kept if header[0].lower() not in _SET_ON_PAGES), *page]

    return add_security_headers
