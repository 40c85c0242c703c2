"""Jinja2 configuration: the templates, and the few helpers they call."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.web.formatting import exact_time, local_time, time_ago

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def _key_status(key: ApiKey, now: datetime) -> str:
    return rules.key_status(revoked_at=key.revoked_at, expires_at=key.expires_at, now=now)


def _register_helpers(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["time_ago"] = time_ago
    engine.engine.filters["exact_time"] = exact_time
    engine.engine.filters["local_time"] = local_time
    engine.engine.globals["key_status"] = _key_status


def create_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=_register_helpers
    )
