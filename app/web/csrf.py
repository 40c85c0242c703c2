"""CSRF tokens bound to the staff session.

A token is a random nonce and an HMAC (SECRET_KEY) of the nonce and the session id, so it is good for that
session only: a `csrftoken` cookie planted by someone else, with its token, fails, and a signed-in user's
tokens die with the session. Before sign-in there is no session (and none is stored just to show the form):
the sign-in form's token is bound to nothing and works as a signed double-submit cookie. Every state-changing
request must send the token (form field `_csrf_token`, or the `x-csrftoken` header HTMX sends) equal to the
cookie and valid for the session it comes with. The cookie follows the session: a response that signs in or
out carries a new one. Litestar's own CSRF middleware cannot bind its tokens to anything, hence this one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from litestar.connection import Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import RequestEncodingType, ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from app.domain.accounts.guards import SAFE_METHODS
from app.domain.accounts.sessions import loaded_session_id, outgoing_session_id

COOKIE_NAME = "csrftoken"
HEADER_NAME = "x-csrftoken"
FORM_FIELD = "_csrf_token"
_NONCE_LENGTH = 32


def _signature(secret: str, nonce: str, session_id: str | None) -> str:
    message = f"{nonce}:{session_id or ''}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue_token(secret: str, session_id: str | None) -> str:
    nonce = secrets.token_hex(_NONCE_LENGTH // 2)
    return nonce + _signature(secret, nonce, session_id)


def _same(given: str, expected: str) -> bool:
    """Constant-time, and False (not TypeError) for text that is not ASCII, as a forged header may be."""
    return given.isascii() and expected.isascii() and hmac.compare_digest(given, expected)


def is_valid_token(secret: str, token: str | None, session_id: str | None) -> bool:
    if not token or len(token) != _NONCE_LENGTH + 64:
        return False
    nonce = token[:_NONCE_LENGTH]
    return _same(token[_NONCE_LENGTH:], _signature(secret, nonce, session_id))


class SessionBoundCSRFMiddleware(ASGIMiddleware):
    """Runs inside the session middleware, which has loaded the session by then."""

    scopes = (ScopeType.HTTP,)
    # Litestar's own CSRF opt-out key; no staff route sets it (tests/integration/test_route_security.py).
    exclude_opt_key = "exclude_from_csrf"

    def __init__(self, *, secret: str, secure: bool, exclude: list[str]) -> None:
        self.secret = secret
        self.secure = secure
        excluded = re.compile("|".join(exclude))
        self.should_bypass_for_scope = lambda scope: excluded.search(scope["path"]) is not None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request: Request[Any, Any, Any] = Request(scope, receive=receive)
        cookie = request.cookies.get(COOKIE_NAME)
        session_id = loaded_session_id(scope)
        if request.method in SAFE_METHODS:
            token = (
                cookie
                if is_valid_token(self.secret, cookie, session_id)
                else issue_token(self.secret, session_id)
            )
        else:
            token = request.headers.get(HEADER_NAME)
            if not token and request.content_type[0] in (
                RequestEncodingType.URL_ENCODED,
                RequestEncodingType.MULTI_PART,
            ):
                token = (await request.form()).get(FORM_FIELD)
            if (
                not isinstance(token, str)
                or cookie is None
                or not _same(token, cookie)
                or not is_valid_token(self.secret, token, session_id)
            ):
                raise PermissionDeniedException("CSRF token verification failed")
        # What templates render as csrf_input / csrf_token(); a str by now.
        ScopeState.from_scope(scope).csrf_token = str(token)
        await next_app(scope, receive, self._send_cookie(scope, send, cookie))

    def _send_cookie(self, scope: Scope, send: Send, cookie: str | None) -> Send:
        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The session the response leaves behind (signed in, out, or as it was) decides the token.
                session_id = outgoing_session_id(scope)
                if not is_valid_token(self.secret, cookie, session_id):
                    token = ScopeState.from_scope(scope).csrf_token
                    if not isinstance(token, str) or not is_valid_token(self.secret, token, session_id):
                        token = issue_token(self.secret, session_id)
                    value = Cookie(
                        key=COOKIE_NAME,
                        value=token,
                        path="/",
                        secure=self.secure,
                        httponly=True,
                        samesite="lax",
                    ).to_header(header="")
                    MutableScopeHeaders.from_message(message).add("set-cookie", value)
            await send(message)

        return send_with_cookie
