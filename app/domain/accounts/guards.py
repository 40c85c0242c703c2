"""Staff sign-in by server-side session, and the role guard."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend
from litestar.security.session_auth import SessionAuth

from app.domain.accounts.models import User
from app.domain.accounts.sessions import BoundedSessionConfig
from app.lib.db import OWN_WRITE_TRANSACTION, begin_writing
from app.settings import SESSION_LIFETIME_HOURS, Settings

SESSION_USER_KEY = "user_id"
# Requests that change nothing: no CSRF token, and a read-only database session.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "session"
# Paths that never carry a staff session: the public API is authenticated by keys, not cookies.
PUBLIC_PATHS = ["^/api/", "^/health$", "^/static/", "^/schema(/|$)"]


def landing_path(user: User) -> str:
    """Where a signed-in user starts: the first page their role may open."""
    return "/settings/api-keys" if user.is_admin else "/bookings/reservations"


UserLoader = Callable[[ASGIConnection[Any, Any, Any, Any]], Awaitable[User | None]]


def build_session_auth(settings: Settings, alchemy: SQLAlchemyAsyncConfig) -> SessionAuth[User, Any]:
    async def current_user(
        session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
    ) -> User | None:
        try:
            user_id = uuid.UUID(str(session.get(SESSION_USER_KEY)))
        except ValueError:
            return None
        # The request's own database session, so the handler sees the same transaction; its first query, so
        # a request that may write begins it as a writer.
        db_session = alchemy.provide_session(connection.app.state, connection.scope)
        handler = connection.scope.get("route_handler")
        if (
            connection.scope.get("method", "GET") not in SAFE_METHODS
            and handler is not None
            and not handler.opt.get(OWN_WRITE_TRANSACTION)
        ):
            await begin_writing(db_session)
        return await db_session.get(User, user_id)

    return SessionAuth[User, ServerSideSessionBackend](
        retrieve_user_handler=current_user,
        session_backend_config=BoundedSessionConfig(
            key=SESSION_COOKIE,
            secure=settings.is_production,
            httponly=True,
            samesite="lax",
            lifetime_s=SESSION_LIFETIME_HOURS * 3600,
            idle_s=settings.session_idle_minutes * 60,
            exclude=PUBLIC_PATHS,
        ),
        # The customer's manage page is reached by the token in its link, never by a staff session.
        exclude=[*PUBLIC_PATHS, "^/login$", "^/manage(/|$)"],
    )


def user_loader(session_auth: SessionAuth[User, Any]) -> UserLoader:
    """The signed-in user of a request that no route took (a 404 or 405 page), which the session and auth
    middleware never saw: error pages keep the navigation of the signed-in."""
    backend = session_auth.session_backend

    async def load(connection: ASGIConnection[Any, Any, Any, Any]) -> User | None:
        session = await backend.load_from_connection(connection)
        # build_session_auth's handler is a coroutine function.
        return await cast("Awaitable[User | None]", session_auth.retrieve_user_handler(session, connection))

    return load


def requires_admin(connection: ASGIConnection[Any, User, Any, Any], _: BaseRouteHandler) -> None:
    if not connection.user.is_admin:
        raise PermissionDeniedException("Only admins can manage API keys.")
