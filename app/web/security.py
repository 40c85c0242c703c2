"""Security headers on every response; a strict Content-Security-Policy on the staff pages."""

from __future__ import annotations

from litestar.types import Message, Scope

# No inline script anywhere in the pages: behaviour lives in /static/app.js.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)
# The interactive API docs page loads its viewer from a CDN and starts it inline: it only must not be framed.
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
DOCS_PATH = "/api/docs"

_EVERY_RESPONSE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_PAGE = [*_EVERY_RESPONSE, (b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]
_DOCS_PAGE = [
    *_EVERY_RESPONSE,
    (b"content-security-policy", DOCS_CSP.encode()),
    (b"x-frame-options", b"DENY"),
]
_SET_ON_EVERY_RESPONSE = frozenset(name for name, _ in _EVERY_RESPONSE)
_SET_ON_PAGES = frozenset(name for name, _ in _PAGE) - _SET_ON_EVERY_RESPONSE


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Sets the headers, replacing any a handler set. One pass over the response's headers: this runs for
    every response, the API's included (MutableScopeHeaders would scan them once per header set)."""
    if message["type"] != "http.response.start":
        return
    content_type = b""
    kept = []
    for name, value in message.get("headers", ()):
        lowered = name.lower()
        if lowered in _SET_ON_EVERY_RESPONSE:
            continue
        if lowered == b"content-type":
            content_type = value
        kept.append((name, value))
    if not content_type.startswith(b"text/html"):
        message["headers"] = [*kept, *_EVERY_RESPONSE]
        return
    page = _DOCS_PAGE if scope.get("path", "").startswith(DOCS_PATH) else _PAGE
    message["headers"] = [*(header for header in kept if header[0].lower() not in _SET_ON_PAGES), *page]
