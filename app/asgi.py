"""The application factory: `litestar --app app.asgi:create_app`."""

from __future__ import annotations

from collections.abc import Sequence

from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.logging.config import LoggingConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

import app.domain  # noqa: F401  (registers every model on the metadata)
from app.api.router import create_api_router, create_openapi_config
from app.cli import AppCLIPlugin
from app.db import create_alchemy_config
from app.domain.accounts.controllers import AuthController
from app.domain.accounts.guards import PUBLIC_PATHS, build_session_auth
from app.domain.api_keys.controllers import ApiKeysController
from app.domain.api_keys.rate_limit import RateLimiter
from app.domain.audit.controllers import AuditLogController
from app.domain.booking.pages import BookingsController
from app.domain.system.controllers import HealthController
from app.domain.usage.recorder import UsageRecorder
from app.heap import freeze_startup_heap
from app.redis_client import create_redis
from app.redis_pipe import RedisPipe
from app.settings import Settings, get_settings
from app.web.errors import error_page, sign_in_redirect
from app.web.security import add_security_headers
from app.web.templating import STATIC_DIR, create_template_config
from app.workers import create_queue


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/settings/api-keys")


@get("/settings", include_in_schema=False)
async def settings_home() -> Redirect:
    return Redirect("/settings/api-keys")


def create_app(
    settings: Settings | None = None,
    *,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
    extra_api_handlers: Sequence[ControllerRouterHandler] = (),
    usage_recorder: UsageRecorder | None = None,
) -> Litestar:
    """The app. The keyword arguments exist for benchmarks, which add variants of routes to compare."""
    settings = settings or get_settings()
    alchemy = create_alchemy_config(settings)
    redis = create_redis(settings.redis_url)
    session_auth = build_session_auth(settings, alchemy)
    # A usage batch that no worker took within the retention period holds nothing the usage pages would show.
    recorder = usage_recorder or UsageRecorder(
        create_queue(redis, queued_ttl_s=settings.usage_retention_days * 24 * 3600)
    )
    # The rate limiter's own connection: one round trip per API request, on the cheapest path there is.
    limiter_redis = RedisPipe(settings.redis_url)

    def provide_redis() -> Redis:
        return redis

    async def close_redis() -> None:
        await limiter_redis.close()
        await redis.aclose()

    return Litestar(
        route_handlers=[
            home,
            settings_home,
            AuthController,
            ApiKeysController,
            AuditLogController,
            BookingsController,
            HealthController,
            create_api_router(alchemy.get_engine(), RateLimiter(limiter_redis), recorder, extra_api_handlers),
            *extra_route_handlers,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
        ],
        plugins=[
            SQLAlchemyPlugin(config=alchemy),
            HTMXPlugin(),
            AppCLIPlugin(),
        ],
        on_app_init=[session_auth.on_app_init],
        dependencies={"redis": Provide(provide_redis, sync_to_thread=False)},
        stores={"sessions": RedisStore(redis, namespace="sessions", handle_client_shutdown=False)},
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_secure=settings.is_production,
            cookie_httponly=True,
            exclude=PUBLIC_PATHS,
        ),
        template_config=create_template_config(),
        openapi_config=create_openapi_config(),
        exception_handlers={
            NotAuthorizedException: sign_in_redirect,
            NotFoundError: error_page,
            HTTPException: error_page,
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
        before_send=[add_security_headers],
        on_startup=[recorder.start, freeze_startup_heap],
        # The recorder hands over its last events before Redis closes.
        on_shutdown=[recorder.stop, close_redis],
        state=State({"settings": settings, "alchemy": alchemy, "usage_recorder": recorder}),
        debug=False,
    )
