"""Server-side staff sessions (Redis), stricter than Litestar's own:

- nothing is stored, and no cookie set, until something is put in the session: an anonymous visit costs Redis
  nothing;
- a session id is always one the server made: an id the client sends is used only if the store holds a session
  under it, and sign-in always moves to a fresh one (no session fixation);
- a session ends SESSION_LIFETIME_HOURS after it began however busy it is, and after SESSION_IDLE_MINUTES
  without a request; the store's expiry and the cookie's Max-Age never outlast what is left of it;
- clearing the session deletes it and expires the cookie (Max-Age=0).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.types import Empty, Message, Scope, ScopeSession

ROTATE_STATE_KEY = "rotate_session"
_LOADED_ID = "session_loaded_id"
_STARTED = "session_started_at"
_NEW_ID = "session_new_id"
# Kept beside the session's own values in the store, and taken out again when it is loaded.
_STARTED_FIELD = "_started"
_SEEN_FIELD = "_seen"
_SESSION_ID = re.compile(r"^[0-9a-f]{64}$")


def now() -> float:
    """The clock sessions are timed by (a function, so tests can move it)."""
    return time.time()


def rotate_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a fresh session id when this response stores the session."""
    connection.scope.setdefault("state", {})[ROTATE_STATE_KEY] = True


def loaded_session_id(scope: Scope) -> str | None:
    """The id of the session this request came with, if the store held one under it."""
    loaded: str | None = scope.get("state", {}).get(_LOADED_ID)
    return loaded


def outgoing_session_id(scope: Scope) -> str | None:
    """The id the response will store the session under; None when it stores none."""
    session = scope.get("session")
    if session is Empty or not session:
        return None
    state = scope.setdefault("state", {})
    loaded = state.get(_LOADED_ID)
    if loaded and not state.get(ROTATE_STATE_KEY):
        return str(loaded)
    if _NEW_ID not in state:
        state[_NEW_ID] = secrets.token_hex(32)
    return str(state[_NEW_ID])


class BoundedSessionBackend(ServerSideSessionBackend):
    config: BoundedSessionConfig

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        # Litestar asks for an id on every request; an unknown cookie value is never the answer.
        return loaded_session_id(connection.scope) or outgoing_session_id(connection.scope) or ""

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if not session_id or not _SESSION_ID.match(session_id):
            return {}
        store = self.config.get_store_from_app(connection.scope["app"])
        data = await store.get(session_id)
        if data is None:
            return {}
        session = self.deserialize_data(data)
        started, seen, moment = session.pop(_STARTED_FIELD, None), session.pop(_SEEN_FIELD, None), now()
        if (
            not isinstance(started, int | float)
            or not isinstance(seen, int | float)
            or moment - started >= self.config.lifetime_s
            or moment - seen >= self.config.idle_s
        ):
            await store.delete(session_id)
            return {}
        state = connection.scope.setdefault("state", {})
        state[_LOADED_ID], state[_STARTED] = session_id, started
        return session

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        scope = connection.scope
        store = self.config.get_store_from_app(scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        loaded = loaded_session_id(scope)
        session_id = outgoing_session_id(scope)
        if loaded and loaded != session_id:
            await store.delete(loaded)  # signed out, or moved to a fresh id at sign-in
        if session_id is None or not isinstance(scope_session, dict):
            if self.config.key in connection.cookies:
                headers.add("Set-Cookie", self._cookie("", max_age=0))
            return
        moment = now()
        started = scope["state"][_STARTED] if session_id == loaded else moment
        remaining = int(started + self.config.lifetime_s - moment)
        data = {**scope_session, _STARTED_FIELD: started, _SEEN_FIELD: moment}
        await store.set(
            session_id,
            self.serialize_data(data, scope),
            expires_in=max(1, min(self.config.idle_s, remaining)),
        )
        headers.add("Set-Cookie", self._cookie(session_id, max_age=max(1, remaining)))

    def _cookie(self, value: str, *, max_age: int) -> str:
        cookie = Cookie(
            key=self.config.key,
            value=value,
            max_age=max_age,
            expires=0 if max_age == 0 else None,
            path=self.config.path,
            domain=self.config.domain,
            secure=self.config.secure,
            httponly=self.config.httponly,
            samesite=self.config.samesite,
        )
        return cookie.to_header(header="")


@dataclass
class BoundedSessionConfig(ServerSideSessionConfig):
    _backend_class = BoundedSessionBackend
    lifetime_s: int = field(default=12 * 3600)
    idle_s: int = field(default=3600)
