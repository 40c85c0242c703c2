"""Worker jobs of the webhooks context."""

from __future__ import annotations

from typing import Any

from saq.types import Context


async def deliver_webhooks(ctx: Context) -> dict[str, Any]:
    """Every few seconds (a cron job): deliver what is due, batch after batch while batches come full."""
    deliverer = ctx["webhook_deliverer"]  # type: ignore[typeddict-item]
    attempts = 0
    while (made := await deliverer.run()) > 0:
        attempts += made
        if made < deliverer.batch:
            break
    return {"attempts": attempts}
