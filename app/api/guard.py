"""The guard in front of every /api/v1 route: CORS, the key, its origins, its rate limit and the route's scope.

The checks come in the order the help page's promises depend on: key (401), origin (403), rate limit (429),
scope (403), one after the other. Their cost is one indexed lookup by key hash, then one Redis round trip
for the rate limit, counted by the key's id; everything else is in-process. A request counts toward its
key's limit once it is admitted by it, whatever its answer then (403 for a scope, 404, 422 ...); a request
refused for its origin or its rate limit does not count.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC
from email.utils import format_datetime
from typing import Any

import msgspec
from litestar import Request
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Method,
    Receive,
    Scope,
    Send,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from app.api.problems import (
    PROBLEM_MEDIA_TYPE,
    RETRY_AFTER_SECONDS,
    WWW_AUTHENTICATE,
    problem_dict,
    status_of,
)
from app.api.screening import screen
from app.domain.api_keys.authentication import ApiClient, KeyStore, checked_hash
from app.domain.api_keys.rate_limit import RateLimitDecision, RateLimiter
from app.domain.errors import FieldError, KeyRejected
from app.domain.usage.recorder import REFUSED_EXPIRED, REFUSED_REVOKED, UsageRecorder

REQUEST_ID_STATE_KEY = "request_id"
SCOPE_OPT_KEY = "scope"
# The scope of an endpoint any valid key may call (GET /api/v1/key).
ANY_SCOPE = "any"

ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key"
EXPOSED_HEADERS = (
    "RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
    "Retry-After, Location, X-Request-Id, Idempotent-Replayed, Sunset"
)
PREFLIGHT_MAX_AGE = "600"
# Every read endpoint serves both.
READ_METHODS: tuple[Method, ...] = ("GET", "HEAD")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNAUTHORIZED = (b"www-authenticate", WWW_AUTHENTICATE.encode())
# draft-ietf-httpapi-ratelimit-headers: the 429's problem details name the policy it broke.
_VIOLATED = {"violated-policies": ["default"]}

Headers = list[tuple[bytes, bytes]]
# What /api/v1 handlers take as `request`: its `auth` is the ApiClient the guard let through.
ApiRequest = Request[Any, ApiClient, Any]


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), value.encode("latin-1")


def cors_headers(origin: str | None) -> Headers:
    """Any origin may read responses: a key's allowed origins, not CORS, decide who may use it."""
    if origin is None:
        return [_header("Vary", "Origin")]
    return [
        _header("Access-Control-Allow-Origin", origin),
        _header("Vary", "Origin"),
        _header("Access-Control-Expose-Headers", EXPOSED_HEADERS),
    ]


def rate_limit_headers(limit: int, window_s: int, decision: RateLimitDecision | None) -> Headers:
    """The IETF httpapi RateLimit headers, and the X-RateLimit-* ones older clients read, with the same
    values: r = requests left now, t = seconds until a next request would be admitted."""
    headers = [_header("RateLimit-Policy", f'"default";q={limit};w={window_s}')]
    if decision is not None:  # unknown while Redis is unreachable: better absent than wrong
        headers += [
            _header("RateLimit", f'"default";r={decision.remaining};t={decision.reset_seconds}'),
            _header("X-RateLimit-Limit", str(limit)),
            _header("X-RateLimit-Remaining", str(decision.remaining)),
            _header("X-RateLimit-Reset", str(decision.reset_seconds)),
        ]
    return headers


def extract_key(authorization: str | None, api_key_header: str | None) -> str | None:
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if api_key_header and api_key_header.strip():
        return api_key_header.strip()
    return None


def _request_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    wanted = (b"authorization", b"x-api-key", b"origin", b"x-request-id")
    return {name: value.decode("latin-1") for name, value in raw if name in wanted}


class ApiGuardMiddleware(ASGIMiddleware):
    def __init__(self, key_store: KeyStore, limiter: RateLimiter, recorder: UsageRecorder) -> None:
        self.key_store = key_store
        self.limiter = limiter
        self.recorder = recorder

    def __deepcopy__(self, _memo: dict[int, Any]) -> ApiGuardMiddleware:
        # Litestar deep-copies route handlers on registration; the key store and Redis client are shared, not copied.
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        headers = _request_headers(scope["headers"])
        incoming_id = headers.get(b"x-request-id", "")
        request_id = incoming_id if _REQUEST_ID.match(incoming_id) else os.urandom(16).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state[REQUEST_ID_STATE_KEY] = request_id
        origin = headers.get(b"origin")
        response_headers = [*cors_headers(origin), _header("X-Request-Id", request_id)]

        if scope.get("method") == "OPTIONS":  # a CORS preflight carries no key
            response_headers += [
                _header("Access-Control-Allow-Methods", ALLOWED_METHODS),
                _header("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                _header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
            ]
            await _respond(send, 204, response_headers, b"")
            return
        if scope["query_string"] or "\x00" in scope["path"]:
            refusal = screen(scope["path"], scope["query_string"], scope.get("path_params", {}))
            if refusal is not None:
                await _problem(
                    send,
                    request_id,
                    refusal.status,
                    refusal.code,
                    refusal.detail,
                    response_headers,
                    refusal.errors,
                )
                return

        key = extract_key(headers.get(b"authorization"), headers.get(b"x-api-key"))
        try:
            if key is None:
                detail = "Send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`."
                raise KeyRejected("missing_api_key", detail)
            client = await self.key_store.authenticate(checked_hash(key))
        except KeyRejected as rejected:
            await _unauthorized(send, request_id, rejected, response_headers)
            if rejected.key_id is not None:  # a revoked or expired key: who still calls it is worth knowing
                outcome = REFUSED_REVOKED if rejected.code == "key_revoked" else REFUSED_EXPIRED
                self._record(scope, rejected.key_id, outcome, started)
            return
        except (OperationalError, DBAPIError, OSError):
            detail = "The service is temporarily unavailable. Retry shortly."
            retry = [*response_headers, _header("Retry-After", str(RETRY_AFTER_SECONDS))]
            await _problem(send, request_id, 503, "service_unavailable", detail, retry)
            return

        # From here on the request is the key's: it is counted in its usage whatever the outcome.
        channel = _Channel(send)
        try:
            await self._serve_key(scope, receive, channel, next_app, client, origin, response_headers)
        finally:
            self._record(scope, client.key_id, channel.status, started)

    def _record(self, scope: Scope, key_id: uuid.UUID, status: int | str, started: float) -> None:
        self.recorder.record(
            key_id,
            time.time(),
            str(scope.get("method", "GET")),
            scope.get("path_template", scope["path"]),
            status,
            int((time.perf_counter() - started) * 1_000_000),
        )

    async def _serve_key(
        self,
        scope: Scope,
        receive: Receive,
        channel: _Channel,
        next_app: ASGIApp,
        client: ApiClient,
        origin: str | None,
        response_headers: Headers,
    ) -> None:
        request_id: str = scope["state"][REQUEST_ID_STATE_KEY]
        limit = client.rate_limit_per_minute
        window_s = self.limiter.window_s
        if client.previous_secret_expires_at is not None:
            # RFC 8594: the secret sent was rolled and stops working then; integrators see it in their logs.
            sunset = format_datetime(client.previous_secret_expires_at.astimezone(UTC), usegmt=True)
            response_headers = [*response_headers, _header("Sunset", sunset)]
        if client.allowed_origins and origin not in client.allowed_origins:
            # Refused before the count: a copied key used from elsewhere cannot spend its owner's quota.
            detail = (
                f"Origin {origin} is not allowed to use this API key."
                if origin
                else "This API key only accepts requests from its allowed origins, and the request has no Origin."
            )
            headers = [*response_headers, *rate_limit_headers(limit, window_s, None)]
            await _problem(channel, request_id, 403, "origin_not_allowed", detail, headers)
            return

        decision = await self.limiter.hit(client.key_id, limit)
        response_headers = [*response_headers, *rate_limit_headers(limit, window_s, decision)]
        if decision is not None and not decision.allowed:
            retry_after = decision.reset_seconds
            detail = f"This API key allows {limit} requests per {_span(window_s)}. Retry in {retry_after} s."
            headers = [*response_headers, _header("Retry-After", str(retry_after))]
            await _problem(channel, request_id, 429, "rate_limited", detail, headers, extra=_VIOLATED)
            return
        required = _required_scope(scope)
        if required is not None and required not in client.scopes:
            detail = f"This API key lacks the {required!r} scope this endpoint requires."
            await _problem(channel, request_id, 403, "insufficient_scope", detail, response_headers)
            return
        # The caller, as `request.auth` in handlers (ApiRequest). Not a dependency: Litestar resolves a
        # handler's independent dependencies in an anyio task group, ~100 µs per request with two of them.
        scope["auth"] = client
        channel.extra_headers = response_headers
        await next_app(scope, receive, channel)


class _Channel:
    """Where a key's request sends its response: notes the status for the usage event, and adds the
    guard's headers (CORS, rate limit) to a handler's response."""

    __slots__ = ("extra_headers", "send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500  # if the request ends without a response
        self.extra_headers: Headers = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.extra_headers:
                message["headers"] = [*message.get("headers", []), *self.extra_headers]
        await self.send(message)


def _span(window_s: int) -> str:
    return "minute" if window_s == 60 else f"{window_s} s"


async def _unauthorized(send: Send, request_id: str, rejected: KeyRejected, headers: Headers) -> None:
    await _problem(
        send, request_id, status_of(rejected), rejected.code, rejected.detail, [*headers, _UNAUTHORIZED]
    )


async def _problem(
    send: Send,
    request_id: str,
    status: int,
    code: str,
    detail: str,
    headers: Headers,
    errors: Sequence[FieldError] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    body = msgspec.json.encode(problem_dict(status, code, detail, request_id, errors, extra))
    all_headers = [
        _header("Content-Type", PROBLEM_MEDIA_TYPE),
        _header("Content-Length", str(len(body))),
        *headers,
    ]
    await _respond(send, status, all_headers, body)


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _required_scope(scope: Scope) -> str | None:
    """The scope the route declares; create_api_router makes sure every endpoint declares one. None: the
    answers to unknown paths and methods, which need none."""
    scope_name: str | None = scope["route_handler"].opt.get(SCOPE_OPT_KEY)
    return None if scope_name == ANY_SCOPE else scope_name
