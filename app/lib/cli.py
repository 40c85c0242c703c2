"""Helpers for the commands added to the `litestar` CLI."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import click
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession

from app.lib.db import transaction

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def run_in_transaction(app: Litestar, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction against the app's database, then release the engine."""
    alchemy: SQLAlchemyAsyncConfig = app.state["alchemy"]

    async def main() -> T:
        try:
            async with transaction(alchemy) as session:
                return await work(session)
        finally:
            await alchemy.get_engine().dispose()

    return asyncio.run(main())


def fail(message: str) -> Any:
    """Print a one-line error and exit non-zero."""
    raise click.ClickException(message)


def fails_on(*errors: type[Exception]) -> Callable[[F], F]:
    """A command that turns these errors, from its checks or its transaction, into a one-line error and a
    non-zero exit; their message is written for the person at the terminal."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except errors as exc:
                fail(str(exc))

        return cast(F, run)

    return decorate
