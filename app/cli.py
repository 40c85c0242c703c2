"""Commands added to the `litestar` CLI: accounts, keys, webhooks and demo data."""

from __future__ import annotations

from click import Group
from litestar.plugins import CLIPluginProtocol

import app.domain.usage.cli  # noqa: F401  (adds `keys usage`, the usage context's command, to the keys group)
from app.demo import demo_group
from app.domain.accounts.cli import accounts_group
from app.domain.api_keys.cli import keys_group
from app.domain.webhooks.cli import webhooks_group


class AppCLIPlugin(CLIPluginProtocol):
    def on_cli_init(self, cli: Group) -> None:
        cli.add_command(accounts_group)
        cli.add_command(keys_group)
        cli.add_command(demo_group)
        cli.add_command(webhooks_group)
