"""The answers for /api/v1 requests that no endpoint takes: 404 for an unknown path, 405 with `Allow` for a
method a path does not support.

They are routes behind the guard like any other, so these answers carry the CORS headers a browser needs to
read them, need a key (401 without one) and count in the key's usage. Without them the framework would
answer before the guard runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request, route
from litestar.handlers import HTTPRouteHandler
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import Method

from app.api.guard import SCOPE_OPT_KEY
from app.api.problems import ApiProblem

# Every method but OPTIONS, which the guard answers as a CORS preflight on any path.
METHODS: tuple[Method, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "TRACE")
ALLOW_OPT_KEY = "allow"
FALLBACK_OPT_KEY = "fallback"  # marks these handlers, which are not endpoints


async def _unknown_path() -> None:
    raise ApiProblem(404, "not_found", "No such endpoint: the endpoints are listed at /api/docs.")


async def _method_not_allowed(request: Request[Any, Any, Any]) -> None:
    allow: str = request.route_handler.opt[ALLOW_OPT_KEY]
    raise ApiProblem(
        405,
        "method_not_allowed",
        f"{request.method} is not supported here; this path supports {allow}.",
        headers={"Allow": allow},
    )


def fallback_handlers(routes: Iterable[BaseRoute], prefix: str) -> list[HTTPRouteHandler]:
    """A catch-all for unknown paths, and for each endpoint path the methods it does not serve.

    They need no scope (`opt["scope"]` is None): the answer is the same whatever the key may do."""
    handlers = [
        route(
            ["/", "/{rest:path}"],
            http_method=list(METHODS),
            status_code=404,
            opt={SCOPE_OPT_KEY: None, FALLBACK_OPT_KEY: True},
            include_in_schema=False,
        )(_unknown_path)
    ]
    for api_route in routes:
        if not isinstance(api_route, HTTPRoute):
            continue
        served = {method for handler in api_route.route_handlers for method in handler.http_methods}
        missing = [method for method in METHODS if method not in served]
        if missing:
            allow = ", ".join(method for method in (*METHODS, "OPTIONS") if method in served | {"OPTIONS"})
            handlers.append(
                route(
                    api_route.path.removeprefix(prefix) or "/",
                    http_method=missing,
                    status_code=405,
                    opt={SCOPE_OPT_KEY: None, FALLBACK_OPT_KEY: True, ALLOW_OPT_KEY: allow},
                    include_in_schema=False,
                )(_method_not_allowed)
            )
    return handlers
