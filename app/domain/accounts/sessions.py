"""Server-side sessions whose id changes at sign-in, so an id planted beforehand (session fixation) is worthless."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Message, ScopeSession

ROTATE_STATE_KEY = "rotate_session"
_NEW_ID_STATE_KEY = "rotated_session_id"


def rotate_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a fresh session id when this response stores the session."""
    connection.scope.setdefault("state", {})[ROTATE_STATE_KEY] = True


class RotatingSessionBackend(ServerSideSessionBackend):
    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state = connection.scope.setdefault("state", {})
        if not state.get(ROTATE_STATE_KEY):
            return super().get_session_id(connection)
        if _NEW_ID_STATE_KEY not in state:
            state[_NEW_ID_STATE_KEY] = self.generate_session_id()
        new_id: str = state[_NEW_ID_STATE_KEY]
        return new_id

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        old_id = connection.cookies.get(self.config.key)
        if connection.scope.get("state", {}).get(ROTATE_STATE_KEY) and old_id and old_id != "null":
            await self.delete(old_id, store=self.config.get_store_from_app(connection.scope["app"]))
        await super().store_in_message(scope_session, message, connection)


@dataclass
class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend
