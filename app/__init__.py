"""The booking product: its application factory is `app.asgi.create_app`.

`litestar` run from the project's root finds it here with no LITESTAR_APP set: Litestar's app discovery imports
the `app` package first and takes its `create_app`. Resolved on first access, so importing any `app.*` module
(the worker, migrations, a test) does not import the whole application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.asgi import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.asgi import create_app

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
