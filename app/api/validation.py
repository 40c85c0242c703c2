"""Litestar's request validation failures, as the fields they name."""

from __future__ import annotations

import re
from typing import Any

from litestar.exceptions import ValidationException

from app.domain.errors import FieldError

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


def field_errors(exc: ValidationException) -> list[FieldError]:
    """Litestar's and msgspec's validation messages as `errors[]`, each naming its field by a JSON pointer.

    The one place that reads their wording; tests/unit/test_validation_pointers.py pins each shape it knows.
    """
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
