"""RFC 9457 problem details: the one shape of every error the Public Booking API returns."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from advanced_alchemy.exceptions import NotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from app.api.validation import field_errors
from app.domain.errors import (
    BookingRefused,
    CancellationRefused,
    DomainError,
    FieldError,
    IdempotencyKeyInProgress,
    IdempotencyKeyRejected,
    IdempotencyKeyReused,
    InvalidFields,
    InvalidReport,
    KeyRejected,
    NotFound,
    ReportTooLarge,
)
from app.lib.pagination import InvalidCursor

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# A busy or briefly unreachable database (a lock wait that timed out, a failover) clears within seconds.
RETRY_AFTER_SECONDS = 1
# The framework's own refusals (unparsable or oversized bodies, unknown routes), by status. Any other 4xx is
# `bad_request` and any 5xx `internal_error`: every code a client can see is documented.
CODES_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
}


class Problem(msgspec.Struct, omit_defaults=True):
    """An error. `code` is stable and meant for programs; `detail` is for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    errors: list[FieldError] | None = None


def documented_problem(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, description=description, media_type=PROBLEM_MEDIA_TYPE)


# The errors every guarded endpoint can answer with, for the OpenAPI schema.
GUARD_RESPONSES = {
    400: documented_problem(
        "`api_key_in_query`: a key was sent in the query string (send it in a header, and roll it); "
        "`bad_request`: the request could not be read."
    ),
    401: documented_problem("`missing_api_key`, `invalid_api_key`, `key_revoked` or `key_expired`."),
    403: documented_problem("`origin_not_allowed` or `insufficient_scope`."),
    404: documented_problem("`not_found`: no such item in your organization."),
    422: documented_problem("`validation_error`, with `errors[].pointer` naming each field."),
    405: documented_problem("`method_not_allowed`; `Allow` lists the methods the path supports."),
    413: documented_problem("`payload_too_large`: the body is over 10 MB."),
    429: documented_problem(
        '`rate_limited`, with `violated-policies: ["default"]`; `Retry-After` says in how many seconds '
        "a request will be served."
    ),
    500: documented_problem("`internal_error`: a fault on our side, logged with the `request_id`."),
    503: documented_problem("`service_unavailable`: retry after `Retry-After` seconds."),
}


class ApiProblem(ProblemDetailsException):
    """A problem as the API answers it: Litestar's RFC 9457 exception, with the stable `code`, the request id
    and, for invalid fields, `errors`. ProblemDetailsPlugin renders it wherever it is raised."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            detail=detail,
            status_code=status,
            headers=headers or {},
            extra=extra or {},
            type_="about:blank",
            title=TITLES.get(status, "Error"),
        )
        self.status = status
        self.code = code
        self.errors = list(errors) if errors else None

    def to_response(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        headers = dict(self.headers or {})
        request_id = request_id_of(request)
        if not request_id:  # no route matched, so the guard never ran: this response still gets an id
            request_id = headers["X-Request-Id"] = uuid.uuid4().hex
        extra = self.extra if isinstance(self.extra, dict) else None
        body = problem_dict(self.status, self.code, self.detail, request_id, self.errors, extra)
        return Response(body, status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_dict(
    status: int,
    code: str,
    detail: str,
    request_id: str,
    errors: Sequence[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    if errors:
        body["errors"] = [{"pointer": error.pointer, "detail": error.detail} for error in errors]
    if extra:
        body.update(extra)
    return body


def request_id_of(request: Request[Any, Any, Any]) -> str:
    state = request.scope.get("state", {})
    return str(state.get("request_id", ""))


# Refusals that a fresh look at availability resolves; the booking rules' other refusals are 422s.
_CONFLICT_REFUSALS = frozenset({"slot_unavailable", "insufficient_capacity"})
_STATUS_OF_DOMAIN_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    InvalidFields: 422,
    BookingRefused: 422,
    CancellationRefused: 409,
    IdempotencyKeyRejected: 400,
    IdempotencyKeyReused: 422,
    IdempotencyKeyInProgress: 409,
    KeyRejected: 401,
    InvalidReport: 422,
    ReportTooLarge: 413,
}
# Sent with every 401, as RFC 9110 requires.
WWW_AUTHENTICATE = 'Bearer realm="api"'


def status_of(error: DomainError) -> int:
    if isinstance(error, BookingRefused) and error.code in _CONFLICT_REFUSALS:
        return 409
    for kind in type(error).__mro__:
        if kind in _STATUS_OF_DOMAIN_ERROR:
            return _STATUS_OF_DOMAIN_ERROR[kind]
    return 422


def _domain_problem(error: DomainError) -> ApiProblem:
    headers: dict[str, str] = {}
    if isinstance(error, IdempotencyKeyInProgress):
        headers["Retry-After"] = str(error.retry_after_seconds)
    if isinstance(error, KeyRejected):
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return ApiProblem(
        status_of(error),
        error.code,
        error.detail,
        errors=error.errors if isinstance(error, InvalidFields) else None,
        headers=headers,
        extra=error.extra if isinstance(error, BookingRefused) else None,
    )


def to_problem(exc: Exception) -> ApiProblem:
    """Every exception a handler lets out, as the problem a client should see: the one mapping."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, DomainError):
        return _domain_problem(exc)
    if isinstance(exc, InvalidCursor):
        cursor = FieldError("/cursor", "Not a cursor from this API; pass `next_cursor` as given.")
        return _domain_problem(InvalidFields([cursor]))
    if isinstance(exc, ValidationException):
        return _domain_problem(InvalidFields(field_errors(exc)))
    if isinstance(exc, NotFoundError | NotFoundException):
        return ApiProblem(404, "not_found", "No such resource.")
    if isinstance(exc, RecursionError):  # msgspec's answer to JSON nested deeper than it will decode
        return ApiProblem(400, "bad_request", "The JSON body is nested too deeply.")
    if isinstance(exc, HTTPException):
        fallback = "internal_error" if exc.status_code >= 500 else "bad_request"
        code = CODES_BY_STATUS.get(exc.status_code, fallback)
        return ApiProblem(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, OperationalError | DBAPIError | OSError):
        logger.exception("database unavailable")
        return ApiProblem(
            503,
            "service_unavailable",
            "The service is temporarily unavailable. Retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.exception("unexpected error in the Public Booking API")
    return ApiProblem(500, "internal_error", "Something went wrong on our side.")


def problem_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    return to_problem(exc).to_response(request)


# Domain errors and bad cursors become problems through Litestar's plugin, wherever they are raised.
PROBLEM_DETAILS = ProblemDetailsPlugin(
    ProblemDetailsConfig(exception_to_problem_detail_map={DomainError: to_problem, InvalidCursor: to_problem})
)
