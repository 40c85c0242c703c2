"""What the guard refuses before it looks for a key: a key in the URL, and NUL characters in the path or query.

A URL ends up in access logs, proxies and browser history, so a key found there is refused even beside a proper
header: the caller learns to stop at once. NUL cannot be stored (PostgreSQL text refuses it) and is never
meaningful in an id or a filter, so it is a validation error wherever it appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from app.domain.api_keys.rules import KEY_PREFIX
from app.domain.errors import FieldError

# Query parameter names that carry a credential in other APIs; compared lowercased, without "-" and "_".
_CREDENTIAL_PARAMETERS = frozenset(
    {"apikey", "key", "accesstoken", "token", "xapikey", "authorization", "bearer", "auth", "secret"}
)
NUL = "\x00"
NUL_DETAIL = "NUL characters (U+0000) are not allowed."
KEY_IN_QUERY_DETAIL = (
    "Never put an API key in a URL: URLs are written to logs and browser history. Send it as "
    "`Authorization: Bearer <key>` or `X-API-Key: <key>`, and roll this key if the URL may have been logged."
)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str
    errors: tuple[FieldError, ...] = ()


def _is_credential(name: str, value: str) -> bool:
    normalized = name.lower().replace("_", "").replace("-", "")
    return (normalized in _CREDENTIAL_PARAMETERS and value != "") or KEY_PREFIX in value


def screen(path: str, query_string: bytes, path_params: Mapping[str, Any]) -> Refusal | None:
    """Why the request is refused before authentication, or None (the usual case, checked in a few µs)."""
    nul_pointers = []
    if NUL in path:
        nul_pointers = [f"/{name}" for name, value in path_params.items() if NUL in str(value)] or [""]
    if query_string:
        parameters = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        if any(_is_credential(name, value) for name, value in parameters):
            return Refusal(400, "api_key_in_query", KEY_IN_QUERY_DETAIL)
        nul_pointers += [f"/{name}" for name, value in parameters if NUL in name or NUL in value]
    if nul_pointers:
        errors = tuple(
            FieldError(pointer=pointer, detail=NUL_DETAIL) for pointer in dict.fromkeys(nul_pointers)
        )
        return Refusal(422, "validation_error", "The request has invalid fields.", errors)
    return None
