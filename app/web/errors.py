"""Errors on the staff pages: a sign-in redirect, an error page, or a toast for HTMX requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from advanced_alchemy.exceptions import NotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import Receive, Scope, Send
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.domain.accounts.guards import SESSION_COOKIE, UserLoader, landing_path

logger = logging.getLogger(__name__)
TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    500: "Server error",
    503: "Service unavailable",
}
UNAVAILABLE = "The service is unavailable for a moment. Nothing was changed: try again in a few seconds."
RETRY_AFTER_S = 5
# What the error page reads the signed-in user with when no route (so no session middleware) ran.
USER_LOADER_STATE_KEY = "error_page_user_loader"
# Why the sign-in page is shown: a session that had been signed in and has ended.
SESSION_ENDED_PARAM = "ended"
EVERY_ROLES_PAGE = "/bookings/reservations"
_WAY_FORWARD = {
    "/login": "Sign in",
    "/settings/api-keys": "Go to API Keys",
    EVERY_ROLES_PAGE: "Go to Bookings",
}
_OUTAGES = (RedisError, OSError, OperationalError, InterfaceError, PoolTimeoutError)


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def _local_path(url: str | None, request: Request[Any, Any, Any]) -> str | None:
    """The path and query of a URL of this site (HX-Current-URL, Referer), else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.url.netloc:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "") if parts.path.startswith("/") else None


def sign_in_redirect(request: Request[Any, Any, Any], _: NotAuthorizedException) -> Response[Any]:
    """A visitor who is not signed in goes to /login and comes back afterwards: to the page asked for, or, for
    an HTMX request or a form post, to the page it was made from (an action's URL takes no GET)."""
    if request.method == "GET" and not _is_htmx(request):
        target: str | None = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        target = _local_path(request.headers.get("hx-current-url") or request.headers.get("referer"), request)
    params = {"next": target or "/"}
    if SESSION_COOKIE in request.cookies:
        params[SESSION_ENDED_PARAM] = "1"
    location = "/login?" + urlencode(params)
    if _is_htmx(request):
        return Response(None, status_code=200, headers={"HX-Redirect": location})
    return Redirect(location, status_code=303)


def _is_outage(exc: BaseException) -> bool:
    """Redis or the database unreachable, however deep a library wrapped it."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _OUTAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _ErrorPage(ASGIResponse):
    """Renders the error page once it knows who is signed in, which a request no route took has not read yet:
    the page keeps the navigation. During an outage the session is not read (Redis or the database is down):
    a visitor with a session cookie gets the navigation every role has."""

    def __init__(
        self, page: Template, request: Request[Any, Any, Any], render: Callable[[], ASGIResponse]
    ) -> None:
        self._page, self._request, self._render = page, request, render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signed_in = SESSION_COOKIE in self._request.cookies
        unread = self._page.status_code == HTTP_503_SERVICE_UNAVAILABLE
        if "user" not in scope and not unread and signed_in:
            loader: UserLoader | None = self._request.app.state.get(USER_LOADER_STATE_KEY)
            if loader is not None:
                try:
                    scope["user"] = await loader(self._request)
                except Exception as exc:  # an outage: the page is still shown
                    logger.warning("error page: signed-in user unknown: %s", exc)
                    unread = True
        user = scope.get("user")
        if user:
            path = landing_path(user)
        elif unread and signed_in:
            # Signed in, as far as anyone can tell: the page every role may open, not a sign-in that would fail.
            path = EVERY_ROLES_PAGE
            self._page.context["outage_nav"] = True
        else:
            path = "/login"
        self._page.context["way_forward"] = (path, _WAY_FORWARD.get(path, "Go to the start page"))
        await self._render()(scope, receive, send)


class ErrorPageTemplate(Template):
    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **options: Any) -> ASGIResponse:
        render = super().to_asgi_response
        return _ErrorPage(self, request, lambda: render(app, request, **options))


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    headers: dict[str, str] = {}
    if isinstance(exc, NotFoundError):
        status_code, detail = 404, "That page or item does not exist."
    elif isinstance(exc, HTTPException):
        status_code, detail = exc.status_code, exc.detail
    elif _is_outage(exc):
        logger.warning("staff page unavailable on %s: %s", request.url.path, exc)
        status_code, detail = HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE
        headers["Retry-After"] = str(RETRY_AFTER_S)
    else:
        logger.exception("unexpected error on %s", request.url.path)
        status_code, detail = HTTP_500_INTERNAL_SERVER_ERROR, "Something went wrong on our side."
    title = TITLES.get(status_code, "Error")
    if _is_htmx(request):
        toast = {"toast": {"message": f"{title}: {detail}"}}
        return Response(
            None,
            status_code=status_code,
            headers={**headers, "HX-Trigger": json.dumps(toast), "HX-Reswap": "none"},
        )
    return ErrorPageTemplate(
        "errors/error.html",
        context={"status_code": status_code, "title": title, "detail": detail, "retry": status_code == 503},
        status_code=status_code,
        headers=headers,
    )
