"""RFC 9457 problem details: the one shape of every error the Public Booking API returns."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from advanced_alchemy.exceptions import NotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.exc import DBAPIError, OperationalError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# A busy or briefly unreachable database (a lock wait that timed out, a failover) clears within seconds.
RETRY_AFTER_SECONDS = 1
CODES_BY_STATUS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 422: "validation_error"}


class FieldError(msgspec.Struct):
    pointer: str
    detail: str


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
    401: documented_problem("`missing_api_key`, `invalid_api_key`, `key_revoked` or `key_expired`."),
    403: documented_problem("`origin_not_allowed` or `insufficient_scope`."),
    404: documented_problem("`not_found`: no such item in your organization."),
    422: documented_problem("`validation_error`, with `errors[].pointer` naming each field."),
    429: documented_problem("`rate_limited`; `Retry-After` says when to retry."),
    503: documented_problem("`service_unavailable`: retry shortly."),
}


class ApiProblem(Exception):
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
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = headers or {}
        self.extra = extra or {}


def problem_body(
    status: int,
    code: str,
    detail: str,
    request_id: str,
    errors: Sequence[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
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
    return msgspec.json.encode(body)


def request_id_of(request: Request[Any, Any, Any]) -> str:
    state = request.scope.get("state", {})
    return str(state.get("request_id", ""))


def _response(request: Request[Any, Any, Any], problem: ApiProblem) -> Response[bytes]:
    headers = dict(problem.headers)
    request_id = request_id_of(request)
    if not request_id:  # no route matched, so the guard never ran: this response still gets an id
        request_id = headers["X-Request-Id"] = uuid.uuid4().hex
    body = problem_body(
        problem.status, problem.code, problem.detail, request_id, problem.errors, problem.extra
    )
    return Response(body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")
_MISSING_PARAMETER = re.compile(r"^Missing required \w+ parameter '([^']+)'")


def _pointer(item: dict[str, Any], message: str) -> str:
    """A JSON pointer from Litestar's error key: `customer.name` → `/customer/name`; the body itself is ``."""
    key = str(item.get("key") or "").strip("/")
    # Litestar names the body by the handler's parameter, `data`, and drops that prefix from nested keys.
    parts = (
        [] if item.get("source") == "body" and key == "data" else [part for part in key.split(".") if part]
    )
    if missing := _MISSING_FIELD.match(message):
        parts.append(missing.group(1))
    return "".join(f"/{part}" for part in parts)


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    if missing := _MISSING_PARAMETER.match(str(exc.detail)):  # Litestar says this in its message only
        return [FieldError(pointer=f"/{missing.group(1)}", detail="This parameter is required.")]
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message", "Invalid value."))
            pointer = _pointer(item, message)
            if message == "'data'":  # Litestar's KeyError text when there is no body at all
                message = "A JSON body is required."
            errors.append(FieldError(pointer=pointer, detail=message))
    return errors


def to_problem(exc: Exception) -> ApiProblem:
    """Every exception a handler lets out, as the problem a client should see."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, ValidationException):
        return ApiProblem(
            HTTP_422_UNPROCESSABLE_ENTITY,
            "validation_error",
            "The request has invalid fields.",
            errors=_validation_errors(exc),
        )
    if isinstance(exc, NotFoundError | NotFoundException):
        return ApiProblem(404, "not_found", "No such resource.")
    if isinstance(exc, HTTPException):
        code = CODES_BY_STATUS.get(exc.status_code, "error")
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


def problem_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return _response(request, to_problem(exc))
