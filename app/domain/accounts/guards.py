"""Staff sign-in by server-side session, and the role guard."""

from __future__ import annotations

import uuid
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend
from litestar.security.session_auth import SessionAuth

from app.domain.accounts.models import User
from app.domain.accounts.sessions import RotatingSessionConfig
from app.settings import Settings

SESSION_USER_KEY = "user_id"
# Paths that never carry a staff session: the public API is authenticated by keys, not cookies.
PUBLIC_PATHS = ["^/api/", "^/health$", "^/static/", "^/schema"]


def build_session_auth(settings: Settings, alchemy: SQLAlchemyAsyncConfig) -> SessionAuth[User, Any]:
    async def current_user(
        session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
    ) -> User | None:
        try:
            user_id = uuid.UUID(str(session.get(SESSION_USER_KEY)))
        except ValueError:
            return None
        # The request's own database session, so the handler sees the same transaction.
        db_session = alchemy.provide_session(connection.app.state, connection.scope)
        return await db_session.get(User, user_id)

    return SessionAuth[User, ServerSideSessionBackend](
        retrieve_user_handler=current_user,
        session_backend_config=RotatingSessionConfig(
            secure=settings.is_production,
            httponly=True,
            samesite="lax",
            max_age=12 * 3600,
            exclude=PUBLIC_PATHS,
        ),
        exclude=[*PUBLIC_PATHS, "^/login$"],
    )


def requires_admin(connection: ASGIConnection[Any, User, Any, Any], _: BaseRouteHandler) -> None:
    if not connection.user.is_admin:
        raise PermissionDeniedException("Only admins can manage API keys.")
