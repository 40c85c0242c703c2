"""The versioned Public Booking API: /api/v1 behind the guard, documented by an OpenAPI schema."""

from __future__ import annotations

from collections.abc import Sequence

from advanced_alchemy.exceptions import NotFoundError
from litestar import Router
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.types import ControllerRouterHandler

from app.api.docs import SelfHostedSwaggerPlugin
from app.api.fallback import fallback_handlers
from app.api.guard import ANY_SCOPE, SCOPE_OPT_KEY, ApiGuardMiddleware
from app.api.problems import problem_handler
from app.api.v1 import API_PREFIX
from app.api.v1.controllers import (
    AvailabilityController,
    CatalogController,
    KeyController,
    ReservationsController,
)
from app.domain.api_keys import rules
from app.domain.api_keys.authentication import KeyStore
from app.domain.api_keys.rate_limit import RateLimiter
from app.domain.usage.recorder import UsageRecorder

DOCS_PATH = "/api/docs"

_RATE_LIMIT_HEADERS = [
    ResponseHeader(
        name="RateLimit-Policy",
        documentation_only=True,
        description='The key\'s limit: `"default";q=<limit>;w=60`.',
    ),
    ResponseHeader(
        name="RateLimit",
        documentation_only=True,
        description=(
            'What is left: `"default";r=<requests left now>;t=<seconds until the next request would be '
            "admitted>` (0 while requests are left)."
        ),
    ),
    ResponseHeader(
        name="X-RateLimit-Limit",
        documentation_only=True,
        description="Requests allowed in any 60 seconds (a sliding window, not clock minutes).",
    ),
    ResponseHeader(name="X-RateLimit-Remaining", documentation_only=True, description="Requests left now."),
    ResponseHeader(
        name="X-RateLimit-Reset",
        documentation_only=True,
        description="Seconds until the next request would be admitted (0 while requests are left).",
    ),
    ResponseHeader(
        name="X-Request-Id", documentation_only=True, description="Quote it when you contact support."
    ),
]


API_HANDLERS = [CatalogController, AvailabilityController, ReservationsController, KeyController]


def create_api_router(
    key_store: KeyStore,
    limiter: RateLimiter,
    recorder: UsageRecorder,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
) -> Router:
    router = Router(
        path=API_PREFIX,
        route_handlers=[*API_HANDLERS, *extra_handlers],
        middleware=[ApiGuardMiddleware(key_store=key_store, limiter=limiter, recorder=recorder)],
        exception_handlers={
            HTTPException: problem_handler,
            NotFoundError: problem_handler,
            Exception: problem_handler,
        },
        security=[{"bearerKey": []}, {"headerKey": []}],
        response_headers=_RATE_LIMIT_HEADERS,
    )
    for route in router.routes:
        for handler in route.route_handlers:  # type: ignore[union-attr]
            if handler.http_methods == {
                "OPTIONS"
            }:  # Litestar's own, answered by the guard as CORS preflights
                continue
            if handler.opt.get(SCOPE_OPT_KEY) not in (*rules.SCOPES, ANY_SCOPE):
                raise RuntimeError(
                    f"{handler} must declare the scope it needs: opt={{'scope': 'read' | 'write' | 'any'}}"
                )
    for handler in fallback_handlers(list(router.routes), API_PREFIX):
        router.register(handler)
    return router


def create_openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="QuickVisit Public Booking API",
        version="1.0.0",
        description=(
            "Query services, packages and availability, and create reservations, with an API key from "
            "Settings → DEVELOPER → API Keys. Errors are RFC 9457 problem details; every response carries "
            "rate-limit headers."
        ),
        path=DOCS_PATH,
        render_plugins=[SelfHostedSwaggerPlugin(path="/")],
        tags=[
            Tag(name="Catalog", description="Services and packages (Read scope)."),
            Tag(name="Availability", description="Free slots of a service (Read scope)."),
            Tag(name="Key", description="The calling API key (any scope)."),
            Tag(
                name="Reservations",
                description="Book a slot (Write scope, with an `Idempotency-Key`) and read a reservation (Read).",
            ),
        ],
        components=Components(
            security_schemes={
                "bearerKey": SecurityScheme(
                    type="http", scheme="bearer", description="`Authorization: Bearer qv_pk_...`"
                ),
                "headerKey": SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="`X-API-Key: qv_pk_...`",
                ),
            }
        ),
    )
