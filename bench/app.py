"""The app under benchmark: the real app, plus two variants registered through create_app's keyword arguments.

* `/bench/services-noauth`: the handler of `GET /api/v1/services` for one fixed organization, without the
  guard (no key lookup, no rate limit, no usage event). Same process, same database, same serialization.
* `/api/v1/bench/naive-services` (BENCH_VARIANT=naive): the same catalog query behind the same guard, but
  usage is written inside the request's transaction (an upsert into usage_counts and an UPDATE of the key's
  last_used_at), the way a first version often does it. That app's recorder discards events, so it does not
  also batch.

`uvicorn --factory bench.app:create_bench_app`; BENCH_ORG_ID names the fixed organization.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from redis.asyncio import Redis
from sqlalchemy import Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.api.guard import ApiRequest
from app.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from app.api.v1.schemas import ServiceList, ServiceOut
from app.asgi import create_app
from app.domain.accounts.models import Organization
from app.domain.api_keys.authentication import ApiClient
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.rate_limit import RateLimiter
from app.domain.booking.reads import BookingReads, ServiceRow
from app.domain.usage.models import minute_of, usage_counts
from app.domain.usage.recorder import UsageRecorder
from app.lib.pagination import PageRequest, page_in
from app.lib.redis_pipe import RedisPipe
from app.settings import get_settings
from app.workers import create_queue

NOAUTH_PATH = "/bench/services-noauth"
# A trivial handler behind the guard and without it: the guard's own cost, without a database query.
PING_PATH = "/bench/ping"
PING_NOAUTH_PATH = "/bench/ping-noauth"
NAIVE_PATH = "/bench/naive-services"
NAIVE_ROUTE = "/api/v1" + NAIVE_PATH


def _fixed_organization() -> uuid.UUID:
    return uuid.UUID(os.environ["BENCH_ORG_ID"])


async def _list_services(
    booking_reads: BookingReads, client: ApiClient, limit: int, cursor: str | None
) -> ServiceList:
    """Exactly the body of CatalogController.list_services."""
    page = page_in(await booking_reads.services(client), PageRequest.of(limit, cursor), _id)
    return ServiceList(
        data=[ServiceOut.of(item) for item in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


def _id(item: ServiceRow) -> uuid.UUID:
    return item.id


def noauth_handler(organization_id: uuid.UUID) -> Any:
    # The caller the guard would have found, with the organization's catalog version read once (the bench
    # writes no catalog while it runs): the twin shares the handler's catalog cache entry.
    clients: list[ApiClient] = []

    # Outside /api, so the staff session and CSRF middleware would apply (and set a CSRF cookie on every
    # response): these opts switch them off, as PUBLIC_PATHS does for /api routes.
    @get(
        NOAUTH_PATH,
        opt={"exclude_from_auth": True, "skip_session": True, "exclude_from_csrf": True},
        include_in_schema=False,
    )
    async def services_noauth(
        db_engine: NamedDependency[AsyncEngine],
        booking_reads: NamedDependency[BookingReads],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> ServiceList:
        if not clients:
            # Once, in a session of its own: a session injected per request would cost every request what
            # the guarded handler, on the hot read path, does not pay.
            async with AsyncSession(db_engine) as session:
                organization = await session.get_one(Organization, organization_id)
            clients.append(
                ApiClient(
                    key_id=organization_id,
                    organization_id=organization_id,
                    scopes=frozenset({"read"}),
                    allowed_origins=frozenset(),
                    rate_limit_per_minute=0,
                    time_zone=organization.time_zone,
                    catalog_version=organization.catalog_version,
                )
            )
        return await _list_services(booking_reads, clients[0], limit, cursor)

    return services_noauth


@get(PING_PATH, opt={"scope": "read"}, include_in_schema=False)
async def ping() -> dict[str, str]:
    return {"ok": "yes"}


@get(
    PING_NOAUTH_PATH,
    opt={"exclude_from_auth": True, "skip_session": True, "exclude_from_csrf": True},
    include_in_schema=False,
)
async def ping_noauth() -> dict[str, str]:
    return {"ok": "yes"}


@get(NAIVE_PATH, opt={"scope": "read"}, include_in_schema=False)
async def naive_services(
    request: ApiRequest,
    db_session: NamedDependency[AsyncSession],
    booking_reads: NamedDependency[BookingReads],
    limit: FromQuery[Limit] = DEFAULT_LIMIT,
    cursor: FromQuery[Cursor] = None,
) -> ServiceList:
    """The catalog, then this request's usage written in the request's own transaction."""
    started = time.perf_counter()
    api_client = request.auth
    result = await _list_services(booking_reads, api_client, limit, cursor)
    now = datetime.now(UTC)
    insert = postgresql.insert if db_session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(usage_counts).values(
        key_id=api_client.key_id,
        minute=minute_of(now),
        method="GET",
        route=NAIVE_ROUTE,
        status_class="2xx",
        request_count=1,
        total_latency_us=int((time.perf_counter() - started) * 1_000_000),
    )
    await db_session.execute(
        statement.on_conflict_do_update(
            index_elements=[column.name for column in usage_counts.primary_key],
            set_={
                "request_count": usage_counts.c.request_count + 1,
                "total_latency_us": usage_counts.c.total_latency_us + statement.excluded.total_latency_us,
            },
        )
    )
    keys = cast(Table, ApiKey.__table__)
    await db_session.execute(update(keys).where(keys.c.id == api_client.key_id).values(last_used_at=now))
    return result  # the plugin's before_send handler commits on 2xx


class DiscardingRecorder(UsageRecorder):
    """A recorder that drops every event: the naive app writes usage itself."""

    def record(
        self, key_id: uuid.UUID, at: float, method: str, route: str, status: int | str, latency_us: int
    ) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def create_bench_app(rate_limiter: Callable[[RedisPipe], RateLimiter] = RateLimiter) -> Litestar:
    """`rate_limiter`: bench.limiter compares the app's limiter with the one it replaced."""
    settings = get_settings()
    twin = noauth_handler(_fixed_organization())
    if os.environ.get("BENCH_VARIANT", "batched") == "naive":
        # Never connects: the discarding recorder enqueues nothing.
        recorder = DiscardingRecorder(create_queue(Redis.from_url(settings.redis_url)))
        return create_app(
            settings,
            extra_route_handlers=[twin, ping_noauth],
            extra_api_handlers=[naive_services, ping],
            usage_recorder=recorder,
        )
    return create_app(
        settings,
        extra_route_handlers=[twin, ping_noauth],
        extra_api_handlers=[ping],
        rate_limiter=rate_limiter,
    )
