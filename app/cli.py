"""Commands added to the `litestar` CLI: accounts, keys and demo data."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from click import Group
from litestar import Litestar
from litestar.plugins import CLIPluginProtocol
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction

T = TypeVar("T")


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


class AppCLIPlugin(CLIPluginProtocol):
    def on_cli_init(self, cli: Group) -> None:
        from app.demo import demo_group
        from app.domain.accounts.cli import accounts_group
        from app.domain.api_keys.cli import keys_group

        cli.add_command(accounts_group)
        cli.add_command(keys_group)
        cli.add_command(demo_group)
