"""The guard in front of every /api/v1 route: CORS, the key, its origins, its rate limit and the route's scope.

The checks come in the order the help page's promises depend on: key (401), origin (403), rate limit (429),
scope (403). Their cost is one indexed lookup by key hash and one Redis round trip; everything else is
in-process. The round trip starts first, as soon as the key is known to be well formed (the counter is
named by the key's hash), so the lookup happens while it travels; every request made with an existing key
counts toward its limit, whatever its answer. A read (GET, HEAD) that is the only request in progress also
runs its handler during the round trip, and its response is sent, or replaced by the 429, once the count
is back; every other request waits for the count first.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Any

from litestar import Request
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.problems import PROBLEM_MEDIA_TYPE, problem_body
from app.domain.api_keys.authentication import ApiClient, KeyRejected, authenticate, checked_hash
from app.domain.api_keys.rate_limit import WINDOW_SECONDS, PendingHit, RateLimitDecision, RateLimiter
from app.domain.usage.recorder import UsageRecorder

REQUEST_ID_STATE_KEY = "request_id"
SCOPE_OPT_KEY = "scope"

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key"
EXPOSED_HEADERS = (
    "RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
    "Retry-After, Location, X-Request-Id, Idempotent-Replayed"
)
PREFLIGHT_MAX_AGE = "600"
# Requests that change nothing: their handler may run while the rate-limit round trip is on its way.
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNAUTHORIZED = (b"www-authenticate", b'Bearer realm="api"')

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


def rate_limit_headers(limit: int, decision: RateLimitDecision | None) -> Headers:
    """The IETF httpapi RateLimit headers, and the X-RateLimit-* ones older clients read."""
    headers = [_header("RateLimit-Policy", f'"default";q={limit};w={WINDOW_SECONDS}')]
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
    def __init__(self, engine: AsyncEngine, limiter: RateLimiter, recorder: UsageRecorder) -> None:
        self.engine = engine
        self.limiter = limiter
        self.recorder = recorder
        self.in_progress = 0  # requests of this process inside the guard

    def __deepcopy__(self, _memo: dict[int, Any]) -> ApiGuardMiddleware:
        # Litestar deep-copies route handlers on registration; the engine and Redis client are shared, not copied.
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

        key = extract_key(headers.get(b"authorization"), headers.get(b"x-api-key"))
        try:
            if key is None:
                detail = "Send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`."
                raise KeyRejected("missing_api_key", detail)
            key_hash = checked_hash(key)
        except KeyRejected as rejected:
            await _unauthorized(send, request_id, rejected, response_headers)
            return

        # The rate-limit round trip starts now, named by the key's hash: the key's row is read, and a lone
        # read's handler runs, while it travels.
        self.in_progress += 1
        pending = self.limiter.start(key_hash, alone=self.in_progress == 1)
        try:
            try:
                client = await authenticate(self.engine, key_hash)
            except KeyRejected as rejected:
                self.limiter.forget(pending)
                await _unauthorized(send, request_id, rejected, response_headers)
                return
            except (OperationalError, DBAPIError, OSError):
                detail = "The service is temporarily unavailable. Retry shortly."
                await _problem(send, request_id, 503, "service_unavailable", detail, response_headers)
                return
            # From here on the request is the key's: it is counted in its usage whatever the outcome.
            channel = _Channel(send)
            try:
                await self._serve_key(
                    scope, receive, channel, next_app, client, pending, origin, response_headers
                )
            finally:
                self.recorder.record(
                    client.key_id,
                    time.time(),
                    str(scope.get("method", "GET")),
                    scope.get("path_template", scope["path"]),
                    channel.status,
                    int((time.perf_counter() - started) * 1_000_000),
                )
        finally:
            self.in_progress -= 1
            self.limiter.abandon(pending)  # a request that ended without its decision (refused, cancelled)

    async def _serve_key(
        self,
        scope: Scope,
        receive: Receive,
        channel: _Channel,
        next_app: ASGIApp,
        client: ApiClient,
        pending: PendingHit,
        origin: str | None,
        response_headers: Headers,
    ) -> None:
        request_id: str = scope["state"][REQUEST_ID_STATE_KEY]
        limit = client.rate_limit_per_minute
        if client.allowed_origins and origin not in client.allowed_origins:
            detail = (
                f"Origin {origin} is not allowed to use this API key."
                if origin
                else "This API key only accepts requests from its allowed origins, and the request has no Origin."
            )
            headers = [*response_headers, *rate_limit_headers(limit, None)]
            await _problem(channel, request_id, 403, "origin_not_allowed", detail, headers)
            return

        required = _required_scope(scope)

        async def decide() -> Headers | None:
            """Waits for the count; sends the 429 or 403 and returns None, or the response's extra headers."""
            decision = await self.limiter.decision(pending, limit)
            return await _refuse_if_needed(channel, request_id, client, required, decision, response_headers)

        alone = self.in_progress == 1
        if (
            not alone
            or scope.get("method") not in _SAFE_METHODS
            or self.limiter.known_refused(pending.key_hash)
        ):
            # Decided before the handler does anything: a write; a key already over its limit; and any
            # request while others are in progress. Running a handler during the round trip only pays when
            # the process would otherwise sit idle: under concurrent load the waits already overlap across
            # requests, and overlapping within each one cost ≈ 150 µs more CPU per catalog request in
            # in-process A/B runs (thread hops and wake-ups no longer batched), for no latency gained.
            allowed_with = await decide()
            if allowed_with is None:
                return
            # The caller, as `request.auth` in handlers (ApiRequest). Not a dependency: Litestar resolves a
            # handler's independent dependencies in an anyio task group, ~100 µs per request with two of them.
            scope["auth"] = client
            channel.extra_headers = allowed_with
            await next_app(scope, receive, channel)
            return
        if required not in client.scopes:
            await decide()
            return

        # A lone read: the handler runs while the rate-limit round trip is on its way, and its response waits
        # for the decision. If the key turns out to be over its limit, the response is replaced by the 429
        # (a read changes nothing), and this process decides the key's next requests first. A response
        # ready before the count is held, and sent from here: waiting for the count deep inside the
        # framework's send chain would cost more than the wait itself.
        scope["auth"] = client
        held_start: Message | None = None
        held_body: list[Message] = []
        go_on: Headers | None = None

        async def send_when_decided(message: Message) -> None:
            nonlocal held_start, go_on
            if message["type"] == "http.response.start":
                if not pending.ready:
                    held_start = message
                    return
                go_on = await decide()  # ready: no wait
                if go_on is not None:
                    await channel(_add_headers(message, go_on))
            elif held_start is not None:
                held_body.append(message)
            elif go_on is not None:  # not the body of a response replaced by the 429
                await channel(message)

        await next_app(scope, receive, send_when_decided)
        if held_start is not None:
            go_on = await decide()
            if go_on is not None:
                for message in [_add_headers(held_start, go_on), *held_body]:
                    await channel(message)


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
                _add_headers(message, self.extra_headers)
        await self.send(message)


async def _refuse_if_needed(
    send: Send,
    request_id: str,
    client: ApiClient,
    required: str | None,
    decision: RateLimitDecision | None,
    response_headers: Headers,
) -> Headers | None:
    """Sends the 429 or the missing-scope 403 and returns None; or the headers for the handler's
    response when the request may go on."""
    limit = client.rate_limit_per_minute
    response_headers = [*response_headers, *rate_limit_headers(limit, decision)]
    if decision is not None and not decision.allowed:
        detail = f"This API key allows {limit} requests per minute. Retry in {decision.reset_seconds} s."
        headers = [*response_headers, _header("Retry-After", str(decision.reset_seconds))]
        await _problem(send, request_id, 429, "rate_limited", detail, headers)
        return None
    if required not in client.scopes:
        detail = f"This API key lacks the {required!r} scope this endpoint requires."
        await _problem(send, request_id, 403, "insufficient_scope", detail, response_headers)
        return None
    return response_headers


def _add_headers(message: Message, headers: Headers) -> Message:
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", []), *headers]
    return message


async def _unauthorized(send: Send, request_id: str, rejected: KeyRejected, headers: Headers) -> None:
    await _problem(send, request_id, 401, rejected.code, rejected.detail, [*headers, _UNAUTHORIZED])


async def _problem(
    send: Send, request_id: str, status: int, code: str, detail: str, headers: Headers
) -> None:
    body = problem_body(status, code, detail, request_id)
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
    """The scope the route declares; create_api_router makes sure every route declares one."""
    scope_name: str | None = scope["route_handler"].opt.get(SCOPE_OPT_KEY)
    return scope_name
