"""Settings → DEVELOPER → API Keys: one handler per action, each rendering the full page or its HTMX partial."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template

from app.domain.accounts.guards import requires_admin
from app.domain.accounts.models import User
from app.domain.api_keys import rules
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import Actor
from app.domain.usage.chart import OUTCOME_LABELS, build_chart
from app.domain.usage.services import summarize

INDEX = "/settings/api-keys"

# What a blank Create API Key form holds.
BLANK_FORM: dict[str, Any] = {
    "name": "",
    "scopes": ["read"],
    "allowed_origins": "",
    "rate_limit_per_minute": str(rules.RATE_LIMIT_DEFAULT),
    "expires_in_days": "never",
}


def _form_values(form: FormMultiDict) -> dict[str, Any]:
    return {
        "name": form.get("name", ""),
        "scopes": form.getall("scopes", []),
        "allowed_origins": form.get("allowed_origins", ""),
        "rate_limit_per_minute": form.get("rate_limit_per_minute", ""),
        "expires_in_days": form.get("expires_in_days", "never"),
    }


def actor_of(request: HTMXRequest) -> Actor:
    user: User = request.user
    return Actor(
        label=user.email, user_id=user.id, ip_address=request.client.host if request.client else None
    )


def _toast(message: str) -> dict[str, str]:
    """An HX-Trigger header for a toast. json.dumps escapes non-ASCII, which headers cannot carry."""
    return {"HX-Trigger": json.dumps({"toast": {"message": message}})}


class ApiKeysController(Controller):
    path = INDEX
    guards = [requires_admin]
    include_in_schema = False
    dependencies = {"api_keys_service": create_service_provider(ApiKeyService)}

    async def _page(
        self, request: HTMXRequest, service: ApiKeyService, status_code: int = 200, **context: Any
    ) -> Template:
        user: User = request.user
        keys = await service.list_for_organization(user.organization_id)
        context.setdefault("form", BLANK_FORM)
        return Template(
            "api_keys/index.html",
            context={"keys": keys, "now": datetime.now(UTC), "errors": {}, **context},
            status_code=status_code,
        )

    @get("/", name="api_keys.index")
    async def index(self, request: HTMXRequest, api_keys_service: NamedDependency[ApiKeyService]) -> Template:
        return await self._page(request, api_keys_service)

    @get("/new", name="api_keys.new")
    async def new(self, request: HTMXRequest, api_keys_service: NamedDependency[ApiKeyService]) -> Template:
        """A blank form: the dialog's body for HTMX, the page with the dialog open without JavaScript."""
        if request.htmx:
            return HTMXTemplate(
                template_name="api_keys/_create_form.html", context={"form": BLANK_FORM, "errors": {}}
            )
        return await self._page(request, api_keys_service, dialog_open=True)

    @post("/", name="api_keys.create", status_code=201)
    async def create(
        self, request: HTMXRequest, api_keys_service: NamedDependency[ApiKeyService]
    ) -> Template:
        form = await request.form()
        values = _form_values(form)
        try:
            key_request = rules.validate_key_request(
                name=values["name"],
                scopes=values["scopes"],
                origins=values["allowed_origins"],
                rate_limit=values["rate_limit_per_minute"],
                expires_in_days=values["expires_in_days"],
            )
        except rules.InvalidKeyRequest as invalid:
            if request.htmx:
                return HTMXTemplate(
                    template_name="api_keys/_create_form.html",
                    context={"form": values, "errors": invalid.errors},
                    status_code=422,
                )
            return await self._page(
                request,
                api_keys_service,
                status_code=422,
                form=values,
                errors=invalid.errors,
                dialog_open=True,
            )
        user: User = request.user
        issued = await api_keys_service.issue(user.organization_id, key_request, actor=actor_of(request))
        if request.htmx:
            keys = await api_keys_service.list_for_organization(user.organization_id)
            return HTMXTemplate(
                template_name="api_keys/_created.html",
                context={"issued": issued, "keys": keys, "now": datetime.now(UTC)},
                status_code=201,
                headers=_toast(f"API key “{issued.api_key.name}” created"),
            )
        return await self._page(request, api_keys_service, status_code=201, issued=issued, dialog_open=True)

    @get("/{key_id:uuid}/usage", name="api_keys.usage")
    async def usage(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        key_id: FromPath[uuid.UUID],
    ) -> Template:
        """How a key is used: requests per day over 30 days, totals, top routes, last used."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        now = datetime.now(UTC)
        summary = await summarize(
            api_keys_service.repository.session, api_key, user.organization.time_zone, now
        )
        return Template(
            "api_keys/usage.html",
            context={
                "key": api_key,
                "now": now,
                "summary": summary,
                "chart": build_chart(summary.days),
                "labels": OUTCOME_LABELS,
                "time_zone": user.organization.time_zone,
            },
        )

    @post("/{key_id:uuid}/revoke", name="api_keys.revoke", status_code=200)
    async def revoke(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        key_id: FromPath[uuid.UUID],
    ) -> Template | Redirect:
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        api_key = await api_keys_service.revoke(api_key, actor=actor_of(request))
        if not request.htmx:
            return Redirect(INDEX, status_code=303)
        return HTMXTemplate(
            template_name="api_keys/_row.html",
            context={"key": api_key, "now": datetime.now(UTC)},
            headers=_toast(f"API key “{api_key.name}” revoked"),
        )

    @post("/{key_id:uuid}/delete", name="api_keys.delete", status_code=200)
    async def delete(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        key_id: FromPath[uuid.UUID],
    ) -> Template | Redirect:
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        await api_keys_service.remove(api_key, actor=actor_of(request))
        if not request.htmx:
            return Redirect(INDEX, status_code=303)
        keys = await api_keys_service.list_for_organization(user.organization_id)
        return HTMXTemplate(
            template_name="api_keys/_table_body.html",
            context={"keys": keys, "now": datetime.now(UTC)},
            headers=_toast(f"API key “{api_key.name}” deleted"),
        )
