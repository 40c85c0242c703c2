"""Settings → DEVELOPER → API Keys: one handler per action, each rendering the full page or its HTMX partial."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.guards import requires_admin
from app.domain.accounts.models import User
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import (
    ApiKeyService,
    IssuedKey,
    KeyNotRollable,
    KeyUsage,
    LeakedKeyAlertService,
)
from app.domain.audit.services import ACTION_LABELS, Actor, AuditLogService
from app.lib.clock import Clock
from app.lib.toast import toast

INDEX = "/settings/api-keys"

# What a blank Create API Key form holds.
BLANK_FORM: dict[str, Any] = {
    "name": "",
    "scopes": ["read"],
    "allowed_origins": "",
    "rate_limit_per_minute": str(rules.RATE_LIMIT_DEFAULT),
    "expires_in_days": "never",
    "expires_on": "",
}
# The table's filters, as the URL carries them; the first of each is the default.
STATUS_FILTERS = ("all", "active", "revoked", "expired")
SORTS = {"created": "Newest first", "name": "Name", "last_used": "Last used"}
# The key page's "still being called" looks this far back.
REFUSED_WINDOW = timedelta(days=7)


def _text(form: FormMultiDict, name: str, default: str = "") -> str:
    """A text field; a file sent in its place (a multipart upload) counts as empty."""
    value = form.get(name, default)
    return value if isinstance(value, str) else ""


def _form_values(form: FormMultiDict, expiry_default: str = "never") -> dict[str, Any]:
    return {
        "name": _text(form, "name"),
        "scopes": [value for value in form.getall("scopes", []) if isinstance(value, str)],
        "allowed_origins": _text(form, "allowed_origins"),
        "rate_limit_per_minute": _text(form, "rate_limit_per_minute"),
        "expires_in_days": _text(form, "expires_in_days", expiry_default),
        "expires_on": _text(form, "expires_on"),
    }


def _edit_form(api_key: ApiKey) -> dict[str, Any]:
    """The edit form as the key is now: its expiry kept unless changed."""
    return {
        "name": api_key.name,
        "scopes": list(api_key.scopes),
        "allowed_origins": ", ".join(api_key.allowed_origins),
        "rate_limit_per_minute": str(api_key.rate_limit_per_minute),
        "expires_in_days": rules.EXPIRY_KEEP,
        "expires_on": "",
    }


def _validate(values: dict[str, Any], now: datetime, zone: ZoneInfo, *, editing: bool) -> rules.KeyRequest:
    """The form's values as a key request; a custom date is checked against today in the organization's zone."""
    return rules.validate_key_request(
        name=values["name"],
        scopes=values["scopes"],
        origins=values["allowed_origins"],
        rate_limit=values["rate_limit_per_minute"],
        expires_in_days=values["expires_in_days"],
        expires_on=values["expires_on"],
        today=now.astimezone(zone).date(),
        allow_keep=editing,
    )


def filter_keys(
    keys: Sequence[ApiKey], *, status: str, search: str, sort: str, now: datetime
) -> list[ApiKey]:
    """The table's rows: by status (all, active, revoked, expired), name or prefix containing `search`
    (any case), sorted by name, newest first, or most recently used first (never used last)."""
    needle = search.strip().lower().removesuffix("...")
    chosen = [
        key
        for key in keys
        if (
            status == "all"
            or rules.key_status(revoked_at=key.revoked_at, expires_at=key.expires_at, now=now) == status
        )
        and (not needle or needle in key.name.lower() or needle in key.prefix.lower())
    ]
    if sort == "name":
        chosen.sort(key=lambda key: (key.name.lower(), key.created_at))
    elif sort == "last_used":
        chosen.sort(
            key=lambda key: key.last_used_at.timestamp() if key.last_used_at else float("-inf"), reverse=True
        )
    return chosen  # as listed: newest first


def _zone(request: HTMXRequest) -> ZoneInfo:
    user: User = request.user
    return ZoneInfo(user.organization.time_zone)


HELP_PATH = "/help/api-keys"


@get(HELP_PATH, name="help.api_keys", include_in_schema=False)
async def api_keys_help() -> Template:
    """The API keys help page, for every signed-in staff member; its steps follow the screens."""
    return Template("help/api_keys.html")


def actor_of(request: HTMXRequest) -> Actor:
    user: User = request.user
    return Actor(
        label=user.email, user_id=user.id, ip_address=request.client.host if request.client else None
    )


def _key_url(api_key: ApiKey) -> str:
    return f"{INDEX}/{api_key.id}"


async def requests_7d(
    request: HTMXRequest, key_usage: KeyUsage, service: ApiKeyService, now: datetime
) -> dict[uuid.UUID, int]:
    """The table's Requests (7 days) column: every key of the organization in one query."""
    user: User = request.user
    return await key_usage.requests_last_7_days(
        service.repository.session, user.organization_id, user.organization.time_zone, now
    )


class ApiKeysController(Controller):
    path = INDEX
    guards = [requires_admin]
    include_in_schema = False
    dependencies = {
        "api_keys_service": create_service_provider(ApiKeyService),
        "leak_alerts_service": create_service_provider(LeakedKeyAlertService),
    }

    async def _page(
        self,
        request: HTMXRequest,
        service: ApiKeyService,
        clock: Clock,
        alerts: LeakedKeyAlertService,
        key_usage: KeyUsage,
        status_code: int = 200,
        **context: Any,
    ) -> Template:
        user: User = request.user
        keys = await service.list_for_organization(user.organization_id)
        leak_alerts = await alerts.open_for_organization(user.organization_id)
        context.setdefault("form", BLANK_FORM)
        filters = context.pop("filters", {"status": "all", "q": "", "sort": "created"})
        now = clock()
        return Template(
            "api_keys/index.html",
            context={
                "keys": filter_keys(
                    keys, status=filters["status"], search=filters["q"], sort=filters["sort"], now=now
                ),
                "filters": filters,
                "filtered": filters != {"status": "all", "q": "", "sort": "created"},
                "status_filters": STATUS_FILTERS,
                "sorts": SORTS,
                "leak_alerts": leak_alerts,
                "now": now,
                "zone": _zone(request),
                "requests_7d": await requests_7d(request, key_usage, service, now),
                "errors": {},
                **context,
            },
            status_code=status_code,
        )

    @get("/", name="api_keys.index")
    async def index(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        leak_alerts_service: NamedDependency[LeakedKeyAlertService],
        key_usage: NamedDependency[KeyUsage],
        status: FromQuery[str] = "all",
        q: FromQuery[str] = "",
        sort: FromQuery[str] = "created",
    ) -> Template:
        """The table, filtered by status, searched by name or prefix and sorted, as the URL says; the filter
        form asks HTMX for just the table body (and pushes the URL), a history restore gets the page."""
        filters = {
            "status": status if status in STATUS_FILTERS else "all",
            "q": q[:100],
            "sort": sort if sort in SORTS else "created",
        }
        if (
            request.htmx
            and request.htmx.target == "api-keys-body"
            and not request.htmx.history_restore_request
        ):
            user: User = request.user
            keys = await api_keys_service.list_for_organization(user.organization_id)
            now = clock()
            shown = filter_keys(
                keys, status=filters["status"], search=filters["q"], sort=filters["sort"], now=now
            )
            return HTMXTemplate(
                template_name="api_keys/_table_body.html",
                context={
                    "keys": shown,
                    "now": now,
                    "zone": _zone(request),
                    "filtered": True,
                    "requests_7d": await requests_7d(request, key_usage, api_keys_service, now),
                },
            )
        return await self._page(
            request, api_keys_service, clock, leak_alerts_service, key_usage, filters=filters
        )

    @get("/new", name="api_keys.new")
    async def new(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        leak_alerts_service: NamedDependency[LeakedKeyAlertService],
        key_usage: NamedDependency[KeyUsage],
    ) -> Template:
        """A blank form: the dialog's body for HTMX, the page with the dialog open without JavaScript."""
        if request.htmx:
            return HTMXTemplate(
                template_name="api_keys/_create_form.html",
                context={"form": BLANK_FORM, "errors": {}, "zone": _zone(request)},
            )
        return await self._page(
            request, api_keys_service, clock, leak_alerts_service, key_usage, dialog_open=True
        )

    @post("/", name="api_keys.create", status_code=201)
    async def create(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        leak_alerts_service: NamedDependency[LeakedKeyAlertService],
        key_usage: NamedDependency[KeyUsage],
    ) -> Template:
        form = await request.form()
        values = _form_values(form)
        try:
            key_request = _validate(values, clock(), _zone(request), editing=False)
        except rules.InvalidKeyRequest as invalid:
            if request.htmx:
                return HTMXTemplate(
                    template_name="api_keys/_create_form.html",
                    context={"form": values, "errors": invalid.errors, "zone": _zone(request)},
                    status_code=422,
                )
            return await self._page(
                request,
                api_keys_service,
                clock,
                leak_alerts_service,
                key_usage,
                status_code=422,
                form=values,
                errors=invalid.errors,
                dialog_open=True,
            )
        user: User = request.user
        issued = await api_keys_service.issue(
            user.organization_id,
            key_request,
            actor=actor_of(request),
            now=clock(),
            time_zone=user.organization.time_zone,
        )
        if request.htmx:
            keys = await api_keys_service.list_for_organization(user.organization_id)
            now = clock()
            return HTMXTemplate(
                template_name="api_keys/_created.html",
                context={
                    "issued": issued,
                    "keys": keys,
                    "now": now,
                    "zone": _zone(request),
                    "requests_7d": await requests_7d(request, key_usage, api_keys_service, now),
                },
                status_code=201,
                headers=toast(f"API key “{issued.api_key.name}” created"),
            )
        return await self._page(
            request,
            api_keys_service,
            clock,
            leak_alerts_service,
            key_usage,
            status_code=201,
            issued=issued,
            dialog_open=True,
        )

    async def _confirmation(
        self,
        request: HTMXRequest,
        service: ApiKeyService,
        clock: Clock,
        key_id: uuid.UUID,
        action: str,
        return_to: str,
        status_code: int = 200,
        **context: Any,
    ) -> Template:
        user: User = request.user
        api_key = await service.get_for_organization(user.organization_id, key_id)
        now = clock()
        return Template(
            "api_keys/confirm.html",
            context={
                "key": api_key,
                "action": action,
                "now": now,
                # Only the key's own page is a place to come back to.
                "return_to": return_to if return_to == _key_url(api_key) else "",
                "previous_active": api_key.previous_expires_at is not None
                and api_key.previous_expires_at > now,
                **context,
            },
            status_code=status_code,
        )

    @get("/{key_id:uuid}/revoke", name="api_keys.confirm_revoke")
    async def confirm_revoke(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_id: FromPath[uuid.UUID],
        return_to: FromQuery[str] = "",
    ) -> Template:
        """Revoke without JavaScript: the question the dialog asks, as a page of its own."""
        return await self._confirmation(request, api_keys_service, clock, key_id, "revoke", return_to)

    @get("/{key_id:uuid}/delete", name="api_keys.confirm_delete")
    async def confirm_delete(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_id: FromPath[uuid.UUID],
        return_to: FromQuery[str] = "",
    ) -> Template:
        """Delete without JavaScript: the question the dialog asks (type the key's name), as a page of its own."""
        return await self._confirmation(request, api_keys_service, clock, key_id, "delete", return_to)

    @post("/{key_id:uuid}/revoke", name="api_keys.revoke", status_code=200)
    async def revoke(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Template | Redirect:
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        api_key = await api_keys_service.revoke(api_key, actor=actor_of(request), now=clock())
        from_key_page = (await request.form()).get("return_to") == _key_url(api_key)
        if not request.htmx:
            return Redirect(_key_url(api_key) if from_key_page else INDEX, status_code=303)
        trigger = toast(f"API key “{api_key.name}” revoked")
        if from_key_page:
            return await self._key_page(request, api_key, clock, db_session, key_usage, headers=trigger)
        now = clock()
        return HTMXTemplate(
            template_name="api_keys/_row.html",
            context={
                "key": api_key,
                "now": now,
                "zone": _zone(request),
                "requests_7d": await requests_7d(request, key_usage, api_keys_service, now),
            },
            headers=trigger,
        )

    @post("/{key_id:uuid}/delete", name="api_keys.delete", status_code=200)
    async def delete(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Template | Redirect | Response[str]:
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        form = await request.form()
        from_key_page = form.get("return_to") == _key_url(api_key)
        if _text(form, "confirm_name").strip() != api_key.name:
            # Permanent, and it takes the usage logs: the name must be typed, as the dialog asks.
            error = f"Type the key's name, {api_key.name}, to delete it."
            if request.htmx:
                return HTMXTemplate(
                    template_name="api_keys/_confirm_form.html",
                    context={
                        "key": api_key,
                        "action": "delete",
                        "as_page": False,
                        "delete_error": error,
                        "return_to": form.get("return_to", "") if from_key_page else "",
                    },
                    status_code=422,
                    headers={"HX-Retarget": f"#delete-form-{api_key.id}", "HX-Reswap": "outerHTML"},
                )
            if form.get("confirm_page"):
                return await self._confirmation(
                    request,
                    api_keys_service,
                    clock,
                    key_id,
                    "delete",
                    form.get("return_to", ""),
                    delete_error=error,
                    status_code=422,
                )
            return await self._key_page(
                request,
                api_key,
                clock,
                db_session,
                key_usage,
                status_code=422,
                delete_error=error,
                open_dialog="delete",
            )
        await api_keys_service.remove(api_key, actor=actor_of(request))
        if not request.htmx:
            return Redirect(INDEX, status_code=303)
        trigger = toast(f"API key “{api_key.name}” deleted")
        if from_key_page:  # the page is gone: back to the table
            return Response("", media_type="text/html", headers={**trigger, "HX-Redirect": INDEX})
        keys = await api_keys_service.list_for_organization(user.organization_id)
        now = clock()
        return HTMXTemplate(
            template_name="api_keys/_table_body.html",
            context={
                "keys": keys,
                "now": now,
                "zone": _zone(request),
                "requests_7d": await requests_7d(request, key_usage, api_keys_service, now),
            },
            headers=trigger,
        )

    async def _key_page(
        self,
        request: HTMXRequest,
        api_key: ApiKey,
        clock: Clock,
        session: AsyncSession,
        key_usage: KeyUsage,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        template: str | None = None,
        **context: Any,
    ) -> Template:
        """The key page: in full, or (for HTMX) its #key-page part, which edit and revoke swap."""
        user: User = request.user
        now = clock()
        status = rules.key_status(revoked_at=api_key.revoked_at, expires_at=api_key.expires_at, now=now)
        creator = await session.get(User, api_key.created_by_id) if api_key.created_by_id else None
        refused = None
        if status != "active":
            refused = await key_usage.refused_since(session, api_key.id, now - REFUSED_WINDOW)
        audit = await AuditLogService(session=session).for_subject(user.organization_id, api_key.id)
        leak_alerts = await LeakedKeyAlertService(session=session).open_for_organization(
            user.organization_id, api_key.id
        )
        values = {
            "key": api_key,
            "status": status,
            "now": now,
            "zone": _zone(request),
            "creator": creator,
            "refused": refused,
            "audit_events": audit,
            "audit_labels": ACTION_LABELS,
            "leak_alerts": leak_alerts,
            "form": _edit_form(api_key),
            "errors": {},
            "grace_choices": rules.GRACE_CHOICES,
            "grace": "24h",
            "previous_active": api_key.previous_expires_at is not None and api_key.previous_expires_at > now,
            **context,
        }
        if template is None:
            # A history restore (Back to a range chosen in the usage view) needs the whole page.
            partial = request.htmx and not request.htmx.history_restore_request
            template = "api_keys/_key_page.html" if partial else "api_keys/key.html"
        return Template(template, context=values, status_code=status_code, headers=headers)

    @get("/{key_id:uuid}", name="api_keys.show")
    async def show(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
        usage_range: Annotated[str, QueryParameter(name="range", required=False)] = "",
    ) -> Template:
        """A key's page: its settings, status and expiry, previous secret, who still calls it, its usage (over
        the range in the URL, which the usage view checks) and its audit entries, with Edit, Roll, Revoke and
        Delete."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        return await self._key_page(
            request, api_key, clock, db_session, key_usage, usage_range=usage_range[:20]
        )

    @get(["/{key_id:uuid}/edit", "/{key_id:uuid}/roll"], name="api_keys.dialog")
    async def dialog(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Template:
        """The edit or roll form: the dialog's body for HTMX, the key page with it open without JavaScript."""
        dialog = request.url.path.rsplit("/", 1)[-1]
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        if request.htmx and dialog in ("edit", "roll"):
            now = clock()
            return HTMXTemplate(
                template_name=f"api_keys/_{dialog}_form.html",
                context={
                    "key": api_key,
                    "form": _edit_form(api_key),
                    "errors": {},
                    "now": now,
                    "zone": _zone(request),
                    "grace_choices": rules.GRACE_CHOICES,
                    "grace": "24h",
                    "previous_active": api_key.previous_expires_at is not None
                    and api_key.previous_expires_at > now,
                },
            )
        return await self._key_page(request, api_key, clock, db_session, key_usage, open_dialog=dialog)

    @post("/{key_id:uuid}/edit", name="api_keys.edit", status_code=200)
    async def edit(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Template | Redirect:
        """Save an edit: the same rules and messages as creation; the next API request sees it."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        values = _form_values(await request.form(), expiry_default=rules.EXPIRY_KEEP)
        try:
            key_request = _validate(values, clock(), _zone(request), editing=True)
        except rules.InvalidKeyRequest as invalid:
            if request.htmx:
                return HTMXTemplate(
                    template_name="api_keys/_edit_form.html",
                    context={
                        "key": api_key,
                        "form": values,
                        "errors": invalid.errors,
                        "now": clock(),
                        "zone": _zone(request),
                    },
                    status_code=422,
                )
            return await self._key_page(
                request,
                api_key,
                clock,
                db_session,
                key_usage,
                status_code=422,
                form=values,
                errors=invalid.errors,
                open_dialog="edit",
            )
        api_key = await api_keys_service.edit(
            api_key, key_request, actor=actor_of(request), now=clock(), time_zone=user.organization.time_zone
        )
        if not request.htmx:
            return Redirect(_key_url(api_key), status_code=303)
        return await self._key_page(
            request,
            api_key,
            clock,
            db_session,
            key_usage,
            headers={
                **toast(f"API key “{api_key.name}” saved"),
                "HX-Retarget": "#key-page",
                "HX-Reswap": "outerHTML",
            },
        )

    @post("/{key_id:uuid}/roll", name="api_keys.roll", status_code=201)
    async def roll(
        self,
        request: HTMXRequest,
        api_keys_service: NamedDependency[ApiKeyService],
        clock: NamedDependency[Clock],
        key_usage: NamedDependency[KeyUsage],
        db_session: NamedDependency[AsyncSession],
        key_id: FromPath[uuid.UUID],
    ) -> Template:
        """A new secret, shown once in the dialog; the previous one keeps working for the chosen grace."""
        user: User = request.user
        api_key = await api_keys_service.get_for_organization(user.organization_id, key_id)
        grace_text = (await request.form()).get("grace", "")
        now = clock()
        previous_active = api_key.previous_expires_at is not None and api_key.previous_expires_at > now
        error: str | None = None
        issued: IssuedKey | None = None
        if grace_text not in {value for value, _ in rules.GRACE_CHOICES}:
            error = "Choose how long the current secret keeps working: now, 1 hour, 24 hours or 7 days."
        else:
            try:
                issued = await api_keys_service.roll(
                    api_key, rules.parse_grace(grace_text), actor=actor_of(request), now=now
                )
            except KeyNotRollable as refused:
                error = str(refused)
        if issued is None:
            context = {
                "key": api_key,
                "roll_error": error,
                "grace": grace_text,
                "grace_choices": rules.GRACE_CHOICES,
                "previous_active": previous_active,
                "now": now,
                "zone": _zone(request),
            }
            if request.htmx:
                return HTMXTemplate(
                    template_name="api_keys/_roll_form.html", context=context, status_code=422
                )
            return await self._key_page(
                request,
                api_key,
                clock,
                db_session,
                key_usage,
                status_code=422,
                roll_error=error,
                grace=grace_text,
                open_dialog="roll",
            )
        trigger = toast(f"API key “{issued.api_key.name}” rolled")
        if request.htmx:
            return await self._key_page(
                request,
                issued.api_key,
                clock,
                db_session,
                key_usage,
                status_code=201,
                issued=issued,
                headers=trigger,
                template="api_keys/_rolled.html",
            )
        return await self._key_page(
            request,
            issued.api_key,
            clock,
            db_session,
            key_usage,
            status_code=201,
            issued=issued,
            open_dialog="roll",
        )

    @post("/alerts/{alert_id:uuid}/dismiss", name="api_keys.dismiss_alert", status_code=200)
    async def dismiss_alert(
        self,
        request: HTMXRequest,
        leak_alerts_service: NamedDependency[LeakedKeyAlertService],
        clock: NamedDependency[Clock],
        alert_id: FromPath[uuid.UUID],
    ) -> Response[str] | Redirect:
        """Hide a leaked-key banner for every admin of the organization."""
        user: User = request.user
        alert = await leak_alerts_service.dismiss(
            user.organization_id, alert_id, user_id=user.id, now=clock()
        )
        if request.htmx:
            # The banner is swapped for nothing.
            return Response("", media_type="text/html", headers=toast("Alert dismissed"))
        form = await request.form()
        # Back to the key's own page (or its usage tab) when dismissed there; no other address is followed.
        key_pages = (f"{INDEX}/{alert.api_key_id}", f"{INDEX}/{alert.api_key_id}/usage")
        return_to = form.get("return_to")
        return Redirect(return_to if return_to in key_pages else INDEX, status_code=303)
