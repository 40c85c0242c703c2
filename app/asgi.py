"""The application factory: `litestar --app app.asgi:create_app`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins.htmx import HTMXPlugin
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.api.problems import PROBLEM_DETAILS, problem_handler
from app.api.router import create_api_router, create_openapi_config
from app.api.secret_scanning import create_secret_scanning_router
from app.cli import AppCLIPlugin
from app.domain.accounts.guards import PUBLIC_PATHS, build_session_auth, landing_path, user_loader
from app.domain.accounts.models import User
from app.domain.accounts.pages import AuthController
from app.domain.api_keys.authentication import KeyStore
from app.domain.api_keys.pages import ApiKeysController, api_keys_help
from app.domain.api_keys.rate_limit import RateLimiter
from app.domain.audit.pages import AuditLogController
from app.domain.audit.services import AuditLogNotices
from app.domain.booking.pages import BookingsController, ManageController
from app.domain.booking.reads import BookingReads
from app.domain.usage.pages import UsagePageController
from app.domain.usage.recorder import UsageRecorder
from app.domain.usage.services import UsageCounts
from app.domain.webhooks.pages import WebhooksController
from app.lib.client_address import TrustedProxiesMiddleware
from app.lib.clock import Clock, system_clock
from app.lib.db import create_alchemy_config
from app.lib.github_signatures import GitHubPublicKeys
from app.lib.heap import freeze_startup_heap
from app.lib.redis_client import create_redis
from app.lib.redis_pipe import RedisPipe
from app.settings import Settings, get_settings
from app.web.csrf import SessionBoundCSRFMiddleware
from app.web.errors import USER_LOADER_STATE_KEY, error_page, sign_in_redirect
from app.web.health import HealthCheck, create_health_handler
from app.web.security import security_headers
from app.web.templating import STATIC_DIR, create_template_config
from app.workers import create_queue


@get("/", include_in_schema=False)
async def home(request: Request[User, Any, Any]) -> Redirect:
    return Redirect(landing_path(request.user))


@get("/settings", include_in_schema=False)
async def settings_home(request: Request[User, Any, Any]) -> Redirect:
    # Every settings page is for admins: staff are not offered Settings, and land on their own start.
    return Redirect(landing_path(request.user))


def _error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors outside any route's own handlers (no route matched): the API answers as the API does."""
    if request.url.path.startswith("/api/"):
        return problem_handler(request, exc)
    return error_page(request, exc)


def create_app(
    settings: Settings | None = None,
    *,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
    extra_api_handlers: Sequence[ControllerRouterHandler] = (),
    usage_recorder: UsageRecorder | None = None,
    clock: Clock = system_clock,
    rate_limiter: Callable[[RedisPipe], RateLimiter] = RateLimiter,
) -> Litestar:
    """The app. `clock` is what it takes the current time from (tests move it); `rate_limiter` makes the
    limiter (tests shorten the rate limits' window so as not to wait minutes); the other keyword arguments
    exist for benchmarks, which add variants of routes (and of the rate limiter) to compare."""
    settings = settings or get_settings()
    alchemy = create_alchemy_config(settings)
    redis = create_redis(settings.redis_url)
    session_auth = build_session_auth(settings, alchemy)
    # A usage batch that no worker took within the hourly retention (the 90 days of the longest usage chart
    # by default) holds nothing the usage pages would show.
    recorder = usage_recorder or UsageRecorder(
        create_queue(redis, queued_ttl_s=settings.usage_hourly_retention_days * 24 * 3600)
    )
    # The rate limiter's own connection (and /health's): one round trip per API request, on the cheapest
    # path there is (redis-py costs several times its CPU per round trip: docs/BENCHMARKS.md).
    limiter_redis = RedisPipe(settings.redis_url)
    health_check = HealthCheck(alchemy.get_engine(), limiter_redis)
    key_store = KeyStore(alchemy.get_engine(), clock)
    booking_reads = BookingReads(alchemy.get_engine())
    limiter = rate_limiter(limiter_redis)

    def provide_redis() -> Redis:
        return redis

    def provide_clock() -> Clock:
        return clock

    def provide_booking_reads() -> BookingReads:
        return booking_reads

    async def close_redis() -> None:
        await limiter_redis.close()
        await redis.aclose()

    return Litestar(
        route_handlers=[
            home,
            settings_home,
            AuthController,
            ApiKeysController,
            api_keys_help,
            UsagePageController,
            AuditLogController,
            BookingsController,
            ManageController,
            WebhooksController,
            create_health_handler(health_check),
            create_api_router(key_store, limiter, recorder, extra_api_handlers),
            create_secret_scanning_router(
                key_store,
                GitHubPublicKeys.from_settings(
                    settings.github_secret_scanning_keys_file, settings.github_secret_scanning_keys_url
                ),
            ),
            *extra_route_handlers,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
        ],
        plugins=[
            SQLAlchemyPlugin(config=alchemy),
            HTMXPlugin(),
            PROBLEM_DETAILS,
            AppCLIPlugin(),
        ],
        on_app_init=[session_auth.on_app_init],
        middleware=[
            # Without trusted proxies the socket peer is the client, and the hot path pays nothing for this.
            *(
                [DefineMiddleware(TrustedProxiesMiddleware, trusted=settings.trusted_proxies)]
                if settings.trusted_proxies
                else []
            ),
            # After the session middleware (which session_auth puts first): tokens are bound to the session.
            SessionBoundCSRFMiddleware(
                secret=settings.secret_key, secure=settings.is_production, exclude=PUBLIC_PATHS
            ),
        ],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "account_notices": Provide(AuditLogNotices, sync_to_thread=False),
            "key_usage": Provide(UsageCounts, sync_to_thread=False),
            "clock": Provide(provide_clock, sync_to_thread=False),
            "booking_reads": Provide(provide_booking_reads, sync_to_thread=False),
        },
        stores={"sessions": RedisStore(redis, namespace="sessions", handle_client_shutdown=False)},
        template_config=create_template_config(),
        openapi_config=create_openapi_config(),
        exception_handlers={
            NotAuthorizedException: sign_in_redirect,
            NotFoundError: _error,
            HTTPException: _error,
            # Redis or the database down: an HTML 503 page on the staff pages, never a JSON 500.
            Exception: _error,
        },
        # Our loggers get a handler; the root logger is left to the server (and to pytest's capture).
        logging_config=LoggingConfig(
            configure_root_logger=False,
            loggers={
                "app": {"level": "INFO", "handlers": ["queue_listener"], "propagate": True},
                # SAQ logs every enqueue at INFO: one line per usage batch, and a quarter of the throughput.
                "saq": {"level": "WARNING", "propagate": True},
            },
        ),
        before_send=[security_headers(production=settings.is_production)],
        on_startup=[recorder.start, freeze_startup_heap],
        # The recorder hands over its last events before Redis closes.
        on_shutdown=[recorder.stop, close_redis],
        state=State(
            {
                "settings": settings,
                "alchemy": alchemy,
                "usage_recorder": recorder,
                "key_store": key_store,
                "booking_reads": booking_reads,
                "health_check": health_check,
                "clock": clock,
                USER_LOADER_STATE_KEY: user_loader(session_auth),
            }
        ),
        debug=False,
    )
