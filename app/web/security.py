"""Security headers on every response; a strict Content-Security-Policy on the staff pages."""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

# No inline script anywhere in the pages: behaviour lives in /static/app.js.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)
# The interactive API docs page loads its viewer from a CDN and starts it inline: it only must not be framed.
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
DOCS_PATH = "/api/docs"


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    if (headers.get("content-type") or "").startswith("text/html"):
        path: str = scope.get("path", "")
        headers["Content-Security-Policy"] = DOCS_CSP if path.startswith(DOCS_PATH) else PAGE_CSP
        headers["X-Frame-Options"] = "DENY"
