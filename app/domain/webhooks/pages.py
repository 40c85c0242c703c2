"""Settings → Webhooks (admins): endpoints, their signing secret (shown once, rollable), a test event,
enabling and disabling, and each endpoint's delivery log.

Every action is a plain form answered with the page (or a redirect to it); HTMX swaps the page's own part.
"""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.guards import requires_admin
from app.domain.accounts.models import User
from app.domain.audit.services import Actor
from app.domain.errors import InvalidFields
from app.domain.webhooks import rules, services
from app.domain.webhooks.models import WebhookEndpoint
from app.lib.clock import Clock
from app.lib.toast import toast

INDEX = "/settings/webhooks"


def _actor(request: HTMXRequest) -> Actor:
    user: User = request.user
    return Actor(
        label=user.email, user_id=user.id, ip_address=request.client.host if request.client else None
    )


def _settings(request: HTMXRequest) -> Any:
    return request.app.state.settings


class WebhooksController(Controller):
    path = INDEX
    guards = [requires_admin]
    include_in_schema = False

    async def _index(
        self,
        request: HTMXRequest,
        session: AsyncSession,
        *,
        form: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        created: services.WithSecret | None = None,
        status_code: int = 200,
    ) -> Template:
        user: User = request.user
        context = {
            "endpoints": await services.for_organization(session, user.organization_id),
            "event_types": rules.EVENT_TYPES,
            "form": form or {"url": "", "events": list(rules.EVENT_TYPES[:2])},
            "errors": errors or {},
            "created": created,
            "production": _settings(request).is_production,
        }
        return Template("webhooks/index.html", context=context, status_code=status_code)

    @get("/", name="webhooks.index")
    async def index(self, request: HTMXRequest, db_session: NamedDependency[AsyncSession]) -> Template:
        return await self._index(request, db_session)

    @post("/", name="webhooks.add", status_code=201)
    async def add(self, request: HTMXRequest, db_session: NamedDependency[AsyncSession]) -> Template:
        user: User = request.user
        data = await request.form()
        url = str(data.get("url", ""))
        events = [str(item) for item in data.getall("events", [])]
        form = {"url": url, "events": events}
        settings = _settings(request)
        try:
            created = await services.add(
                db_session,
                user.organization_id,
                url,
                events,
                secret_key=settings.secret_key,
                production=settings.is_production,
                actor=_actor(request),
            )
        except InvalidFields as invalid:
            errors = {error.pointer.lstrip("/"): error.detail for error in invalid.errors}
            # 422 re-renders the form with its messages (HTMX swaps 422, see base.html).
            return await self._index(request, db_session, form=form, errors=errors, status_code=422)
        return await self._index(request, db_session, created=created, status_code=201)

    async def _endpoint(
        self,
        request: HTMXRequest,
        session: AsyncSession,
        endpoint: WebhookEndpoint,
        *,
        notice: str | None = None,
        notice_kind: str = "success",
        created: services.WithSecret | None = None,
        confirm_remove: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Template:
        user: User = request.user
        context = {
            "endpoint": endpoint,
            "attempts": await services.delivery_log(session, endpoint),
            "zone": ZoneInfo(user.organization.time_zone),
            "notice": notice,
            "notice_kind": notice_kind,
            "created": created,
            "confirm_remove": confirm_remove,
        }
        return Template("webhooks/endpoint.html", context=context, headers=headers)

    async def _get(
        self, request: HTMXRequest, session: AsyncSession, endpoint_id: uuid.UUID
    ) -> WebhookEndpoint:
        user: User = request.user
        return await services.get(session, endpoint_id, user.organization_id)

    @get("/{endpoint_id:uuid}", name="webhooks.endpoint")
    async def endpoint(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        endpoint_id: FromPath[uuid.UUID],
        confirm: FromQuery[str] = "",
    ) -> Template:
        """The endpoint's page; `?confirm=remove` (Remove without JavaScript) opens the question its dialog asks."""
        endpoint = await self._get(request, db_session, endpoint_id)
        return await self._endpoint(request, db_session, endpoint, confirm_remove=confirm == "remove")

    @post("/{endpoint_id:uuid}/test", name="webhooks.test", status_code=200)
    async def send_test(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        clock: NamedDependency[Clock],
        endpoint_id: FromPath[uuid.UUID],
    ) -> Template:
        endpoint = await self._get(request, db_session, endpoint_id)
        try:
            event_id = await services.send_test(db_session, endpoint, clock())
        except InvalidFields as invalid:
            return await self._endpoint(
                request, db_session, endpoint, notice=invalid.errors[0].detail, notice_kind="error"
            )
        notice = f"Test event {event_id} queued: it appears in the log once the worker delivers it."
        return await self._endpoint(request, db_session, endpoint, notice=notice)

    @post("/{endpoint_id:uuid}/toggle", name="webhooks.toggle", status_code=200)
    async def toggle(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        endpoint_id: FromPath[uuid.UUID],
    ) -> Template:
        endpoint = await self._get(request, db_session, endpoint_id)
        await services.set_enabled(db_session, endpoint, not endpoint.enabled, actor=_actor(request))
        notice = (
            "Endpoint enabled."
            if endpoint.enabled
            else "Endpoint disabled: it receives nothing until enabled."
        )
        trigger = toast("Endpoint enabled" if endpoint.enabled else "Endpoint disabled")
        return await self._endpoint(request, db_session, endpoint, notice=notice, headers=trigger)

    @post("/{endpoint_id:uuid}/roll", name="webhooks.roll", status_code=200)
    async def roll(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        endpoint_id: FromPath[uuid.UUID],
    ) -> Template:
        endpoint = await self._get(request, db_session, endpoint_id)
        created = await services.roll_secret(
            db_session, endpoint, secret_key=_settings(request).secret_key, actor=_actor(request)
        )
        return await self._endpoint(
            request, db_session, endpoint, created=created, headers=toast("Signing secret rolled")
        )

    @post("/{endpoint_id:uuid}/delete", name="webhooks.delete", status_code=303)
    async def delete(
        self,
        request: HTMXRequest,
        db_session: NamedDependency[AsyncSession],
        endpoint_id: FromPath[uuid.UUID],
    ) -> Redirect | Response[str]:
        endpoint = await self._get(request, db_session, endpoint_id)
        await services.remove(db_session, endpoint, actor=_actor(request))
        if request.htmx:  # the endpoint's page is gone, so is the part HTMX would swap: the whole index
            return Response("", status_code=200, media_type="text/html", headers={"HX-Redirect": INDEX})
        return Redirect(INDEX, status_code=303)
