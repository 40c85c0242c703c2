"""Random public identifiers, and the primary keys of rows written without the ORM."""

from __future__ import annotations

import secrets
import uuid
from typing import Final

from advanced_alchemy.mixins import uuid as _model_ids

BASE62_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_base62(length: int) -> str:
    """`length` characters drawn from a CSPRNG: unguessable, and safe in URLs and headers."""
    return "".join(secrets.choice(BASE62_ALPHABET) for _ in range(length))


def row_id() -> uuid.UUID:
    """A primary key as the models' own default makes it (advanced-alchemy's UUIDv7, time-ordered)."""
    made: uuid.UUID = _model_ids.uuid7()  # type: ignore[attr-defined]
    return made
