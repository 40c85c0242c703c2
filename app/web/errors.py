"""Errors on the staff pages: a sign-in redirect, an error page, or a toast for HTMX requests."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from advanced_alchemy.exceptions import NotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.api.problems import problem_handler

logger = logging.getLogger(__name__)
TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    500: "Server error",
}


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def sign_in_redirect(request: Request[Any, Any, Any], _: NotAuthorizedException) -> Response[Any]:
    """A visitor who is not signed in goes to /login and comes back afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = "/login?" + urlencode({"next": target})
    if _is_htmx(request):
        return Response(None, status_code=200, headers={"HX-Redirect": location})
    return Redirect(location, status_code=303)


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if request.url.path.startswith("/api/"):  # no route matched: still answer as the API does
        return problem_handler(request, exc)
    if isinstance(exc, NotFoundError):
        status_code, detail = 404, "That page or item does not exist."
    elif isinstance(exc, HTTPException):
        status_code, detail = exc.status_code, exc.detail
    else:
        logger.exception("unexpected error on %s", request.url.path)
        status_code, detail = HTTP_500_INTERNAL_SERVER_ERROR, "Something went wrong on our side."
    title = TITLES.get(status_code, "Error")
    if _is_htmx(request):
        toast = {"toast": {"message": f"{title}: {detail}"}}
        return Response(
            None, status_code=status_code, headers={"HX-Trigger": json.dumps(toast), "HX-Reswap": "none"}
        )
    return Template(
        "errors/error.html",
        context={"status_code": status_code, "title": title, "detail": detail},
        status_code=status_code,
    )
