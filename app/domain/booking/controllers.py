"""Public Booking API v1: the catalog (Read scope)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.pagination import DEFAULT_LIMIT, Cursor, Limit, PageRequest
from app.api.problems import GUARD_RESPONSES
from app.domain.api_keys.authentication import ApiClient
from app.domain.booking import services
from app.domain.booking.models import Package, Service
from app.domain.booking.schemas import PackageList, PackageOut, ServiceList, ServiceOut

READ = {"scope": "read"}


class CatalogController(Controller):
    tags = ["Catalog"]

    @get(
        "/services",
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List services",
        description="Active services, in a stable order.",
    )
    async def list_services(
        self,
        api_client: NamedDependency[ApiClient],
        db_session: NamedDependency[AsyncSession],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> ServiceList:
        page = await services.list_active(
            db_session, Service, api_client.organization_id, PageRequest.of(limit, cursor)
        )
        return ServiceList(
            data=[ServiceOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @get("/services/{service_id:str}", opt=READ, responses=GUARD_RESPONSES, summary="Get a service")
    async def get_service(
        self,
        api_client: NamedDependency[ApiClient],
        db_session: NamedDependency[AsyncSession],
        service_id: FromPath[str],
    ) -> ServiceOut:
        return ServiceOut.of(
            await services.get_active(db_session, Service, api_client.organization_id, service_id)
        )

    @get(
        "/packages",
        opt=READ,
        responses=GUARD_RESPONSES,
        summary="List packages",
        description="Active prepaid bundles, in a stable order.",
    )
    async def list_packages(
        self,
        api_client: NamedDependency[ApiClient],
        db_session: NamedDependency[AsyncSession],
        limit: FromQuery[Limit] = DEFAULT_LIMIT,
        cursor: FromQuery[Cursor] = None,
    ) -> PackageList:
        page = await services.list_active(
            db_session, Package, api_client.organization_id, PageRequest.of(limit, cursor)
        )
        return PackageList(
            data=[PackageOut.of(item) for item in page.items],
            has_more=page.has_more,
            next_cursor=page.next_cursor,
        )

    @get("/packages/{package_id:str}", opt=READ, responses=GUARD_RESPONSES, summary="Get a package")
    async def get_package(
        self,
        api_client: NamedDependency[ApiClient],
        db_session: NamedDependency[AsyncSession],
        package_id: FromPath[str],
    ) -> PackageOut:
        return PackageOut.of(
            await services.get_active(db_session, Package, api_client.organization_id, package_id)
        )
