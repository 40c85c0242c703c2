"""Worker jobs of the usage context."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from saq.types import Context

from app.db import transaction
from app.domain.usage.recorder import UsageEvent
from app.domain.usage.services import prune_usage

logger = logging.getLogger(__name__)


async def fold_usage(ctx: Context, *, batch_id: str, events: list[UsageEvent]) -> dict[str, Any]:
    """Fold one batch of usage events. Raising lets SAQ retry; the batch id makes a retry count nothing twice."""
    folded = await ctx["usage_folder"].fold(batch_id, events)  # type: ignore[typeddict-item]
    return {"batch_id": batch_id, "events": len(events), "folded": folded}


async def prune_usage_logs(ctx: Context) -> dict[str, Any]:
    retention = timedelta(days=ctx["settings"].usage_retention_days)  # type: ignore[typeddict-item]
    async with transaction(ctx["alchemy"]) as session:  # type: ignore[typeddict-item]
        deleted = await prune_usage(session, retention, datetime.now(UTC))
    logger.info("usage: pruned %d rows older than %s", deleted, retention)
    return {"deleted": deleted}
