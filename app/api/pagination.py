"""The query parameters of paginated API lists: `limit` and an opaque `cursor` (app.lib.pagination)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]
Cursor = Annotated[str | None, Parameter(description="`next_cursor` of the previous page.")]
