"""Worker jobs of the usage context."""

from __future__ import annotations

import logging
from typing import Any

from saq.types import Context

from app.domain.usage.recorder import UsageEvent
from app.domain.usage.services import Retention, prune_usage
from app.lib.db import transaction
from app.settings import Settings

logger = logging.getLogger(__name__)


async def fold_usage(ctx: Context, *, batch_id: str, events: list[UsageEvent]) -> dict[str, Any]:
    """Fold one batch of usage events. Raising lets SAQ retry; the batch id makes a retry count nothing twice."""
    folded = await ctx["usage_folder"].fold(batch_id, events)  # type: ignore[typeddict-item]
    return {"batch_id": batch_id, "events": len(events), "folded": folded}


async def prune_usage_logs(ctx: Context) -> dict[str, Any]:
    """Nightly: per-minute rows, hourly and daily rollups past their retention settings."""
    settings: Settings = ctx["settings"]  # type: ignore[typeddict-item]
    retention = Retention(
        minute_days=settings.usage_minute_retention_days,
        hourly_days=settings.usage_hourly_retention_days,
        daily_months=settings.usage_daily_retention_months,
    )
    async with transaction(ctx["alchemy"]) as session:  # type: ignore[typeddict-item]
        deleted = await prune_usage(session, retention, ctx["clock"]())  # type: ignore[typeddict-item]
    logger.info("usage: pruned %s rows past %s", deleted, retention)
    return {"deleted": deleted}
