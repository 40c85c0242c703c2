"""Jinja2 configuration: the templates, and the few helpers they call."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.web.formatting import local_date, local_time, time_ago, time_tooltip

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def _key_status(key: ApiKey, now: datetime) -> str:
    return rules.key_status(revoked_at=key.revoked_at, expires_at=key.expires_at, now=now)


def _zone(context: Context) -> tzinfo:
    """The signed-in user's organization's zone: every time on the staff pages is on the business's clock."""
    request: Any = context.get("request")
    user = request.scope.get("user") if request is not None else None
    return ZoneInfo(user.organization.time_zone) if user is not None else UTC


@pass_context
def _org_time(context: Context, moment: datetime) -> str:
    return local_time(moment, _zone(context))


@pass_context
def _org_date(context: Context, moment: datetime) -> str:
    return local_date(moment, _zone(context))


@pass_context
def _org_tooltip(context: Context, moment: datetime) -> str:
    return time_tooltip(moment, _zone(context))


def _register_helpers(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["time_ago"] = time_ago
    engine.engine.filters["local_time"] = local_time
    # In the signed-in user's organization's zone; UTC only beside it, in org_tooltip (no UTC-only filter).
    engine.engine.filters["org_time"] = _org_time
    engine.engine.filters["org_date"] = _org_date
    engine.engine.filters["org_tooltip"] = _org_tooltip
    engine.engine.globals["key_status"] = _key_status
    engine.engine.globals["expires_in"] = rules.expires_in
    engine.engine.globals["expiry_soon"] = rules.expiry_soon


def create_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=_register_helpers
    )
