"""The Public API's reads: the catalog, the schedule, a service's bookings and one reservation, as plain rows.

Every read here runs on the app's hot read path (`app/lib/reads.py`): one statement each, no transaction, no
ORM objects. What changes rarely (active services, active packages, opening hours, closures) is kept per
organization in this process, **only** for the catalog version the request's own key lookup read
(`ApiClient.catalog_version`). Database triggers move that version on every write to those tables (migration
0013), so a change is served by the very next request in every process, as a revocation is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, Time, bindparam, cast, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.api_keys.authentication import ApiClient
from app.domain.booking import availability
from app.domain.booking.availability import Occupancy, SlotRules
from app.domain.booking.models import Closure, OpeningHours, Package, Reservation, Service, package_services
from app.domain.errors import NotFound
from app.lib.reads import StatementHook, reads_for

CONFIRMED = "confirmed"


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """An active service, as the API shows it and the slot rules read it."""

    id: uuid.UUID
    name: str
    description: str
    duration_minutes: int
    price_amount: int
    currency: str
    capacity: int
    slot_interval_minutes: int
    min_notice_minutes: int
    booking_horizon_days: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    cancellation_notice_minutes: int

    @property
    def rules(self) -> SlotRules:
        return SlotRules(
            duration_minutes=self.duration_minutes,
            slot_interval_minutes=self.slot_interval_minutes,
            capacity=self.capacity,
            min_notice_minutes=self.min_notice_minutes,
            booking_horizon_days=self.booking_horizon_days,
            buffer_before_minutes=self.buffer_before_minutes,
            buffer_after_minutes=self.buffer_after_minutes,
        )


@dataclass(frozen=True, slots=True)
class PackageRow:
    id: uuid.UUID
    name: str
    description: str
    service_ids: tuple[uuid.UUID, ...]
    session_count: int
    validity_days: int
    price_amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class ReservationView:
    """A reservation and its service's name, as GET /reservations/{id} shows it."""

    public_id: str
    status: str
    start_at: datetime
    end_at: datetime
    party_size: int
    customer_name: str
    customer_email: str
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    manage_token_hash: str | None
    service_id: uuid.UUID
    service_name: str

    @classmethod
    def of(cls, reservation: Reservation, service: Service) -> ReservationView:
        """A reservation loaded as ORM objects (staff pages, the list, a cancellation), as this view."""
        return cls(
            reservation.public_id,
            reservation.status,
            reservation.start_at,
            reservation.end_at,
            reservation.party_size,
            reservation.customer_name,
            reservation.customer_email,
            reservation.created_at,
            reservation.updated_at,
            reservation.cancelled_at,
            reservation.manage_token_hash,
            service.id,
            service.name,
        )


@dataclass(slots=True)
class _Catalog:
    """One organization's catalog at one version; each part is read when first asked for."""

    version: int
    services: tuple[ServiceRow, ...] | None = None
    by_id: dict[uuid.UUID, ServiceRow] = field(default_factory=dict)
    packages: tuple[PackageRow, ...] | None = None
    hours: tuple[availability.OpeningRange, ...] | None = None
    closures: tuple[availability.Closure, ...] = ()


_SERVICES = (
    select(
        Service.id,
        Service.name,
        Service.description,
        Service.duration_minutes,
        Service.price_amount,
        Service.currency,
        Service.capacity,
        Service.slot_interval_minutes,
        Service.min_notice_minutes,
        Service.booking_horizon_days,
        Service.buffer_before_minutes,
        Service.buffer_after_minutes,
        Service.cancellation_notice_minutes,
    )
    .where(Service.organization_id == bindparam("organization_id"), Service.is_active.is_(True))
    .order_by(Service.id)
)
_PACKAGES = (
    select(
        Package.id,
        Package.name,
        Package.description,
        Package.session_count,
        Package.validity_days,
        Package.price_amount,
        Package.currency,
        package_services.c.service_id,
    )
    .outerjoin(package_services, package_services.c.package_id == Package.id)
    .where(Package.organization_id == bindparam("organization_id"), Package.is_active.is_(True))
    .order_by(Package.id, package_services.c.service_id)
)
# Opening hours and closures in one statement: an hours row has a weekday, a closure row dates.
_SCHEDULE = union_all(
    select(
        OpeningHours.weekday,
        OpeningHours.opens_at,
        OpeningHours.closes_at,
        cast(null(), Date).label("start_date"),
        cast(null(), Date).label("end_date"),
    ).where(OpeningHours.organization_id == bindparam("organization_id")),
    select(
        cast(null(), Integer),
        cast(null(), Time),
        cast(null(), Time),
        Closure.start_date,
        Closure.end_date,
    ).where(Closure.organization_id == bindparam("organization_id")),
)
OCCUPANCY = select(Reservation.start_at, Reservation.end_at, Reservation.party_size).where(
    Reservation.service_id == bindparam("service_id"),
    Reservation.status == CONFIRMED,
    Reservation.start_at < bindparam("before"),
    Reservation.end_at > bindparam("after"),
)
_RESERVATION = (
    select(
        Reservation.public_id,
        Reservation.status,
        Reservation.start_at,
        Reservation.end_at,
        Reservation.party_size,
        Reservation.customer_name,
        Reservation.customer_email,
        Reservation.created_at,
        Reservation.updated_at,
        Reservation.cancelled_at,
        Reservation.manage_token_hash,
        Service.id,
        Service.name,
    )
    .join(Service, Service.id == Reservation.service_id)
    .where(
        Reservation.public_id == bindparam("public_id"),
        Reservation.organization_id == bindparam("organization_id"),
    )
)


def occupancy_window(
    rules: SlotRules, service_id: uuid.UUID, first: datetime, last: datetime
) -> dict[str, Any]:
    """`OCCUPANCY`'s values: the service's reservations that can overlap a slot starting from `first` to `last`."""
    # A reservation blocks a slot when their buffered spans overlap: widen the window by both buffers.
    reach = timedelta(minutes=rules.buffer_before_minutes + rules.buffer_after_minutes)
    return {"service_id": service_id, "before": last + rules.duration + reach, "after": first - reach}


# Organizations whose catalog a process keeps; beyond this many it starts over.
_CACHE_LIMIT = 4096


class BookingReads:
    """The API's reads of one app engine, with the per-organization catalog cache of this process.

    `on_statement` may be set at any time (tests set it to count statements).
    """

    def __init__(self, engine: AsyncEngine, on_statement: StatementHook | None = None) -> None:
        self._reads = reads_for(engine)
        self._catalogs: dict[uuid.UUID, _Catalog] = {}
        self.on_statement = on_statement

    def _catalog(self, client: ApiClient) -> _Catalog:
        """This organization's catalog at the version the request read: cached, or a fresh empty one."""
        catalog = self._catalogs.get(client.organization_id)
        if catalog is not None and catalog.version == client.catalog_version:
            return catalog
        catalog = _Catalog(version=client.catalog_version)
        # Parts are read after the key lookup, so they are at least as new as its version: keeping them
        # under that version is safe. A request that read an older version than the one cached replaces
        # nothing.
        current = self._catalogs.get(client.organization_id)
        if current is None or current.version < catalog.version:
            if len(self._catalogs) >= _CACHE_LIMIT:
                self._catalogs.clear()
            self._catalogs[client.organization_id] = catalog
        return catalog

    async def _rows(self, statement: Any, **values: Any) -> list[tuple[Any, ...]]:
        return await self._reads.rows(self._reads.query(statement), values, self.on_statement)

    async def services(self, client: ApiClient) -> tuple[ServiceRow, ...]:
        """The organization's active services, by id."""
        catalog = self._catalog(client)
        if catalog.services is None:
            rows = await self._rows(_SERVICES, organization_id=client.organization_id)
            catalog.services = tuple(ServiceRow(*row) for row in rows)
            catalog.by_id = {service.id: service for service in catalog.services}
        return catalog.services

    async def service(self, client: ApiClient, service_id: str) -> ServiceRow:
        """The active service with this id (as text), or NotFound."""
        try:
            parsed = uuid.UUID(service_id)
        except ValueError:
            raise NotFound(f"No services with id {service_id!r}.") from None
        await self.services(client)
        found = self._catalog(client).by_id.get(parsed)
        if found is None:
            raise NotFound(f"No services with id {service_id!r}.")
        return found

    async def packages(self, client: ApiClient) -> tuple[PackageRow, ...]:
        """The organization's active packages, by id, each with its services' ids in order."""
        catalog = self._catalog(client)
        if catalog.packages is None:
            rows = await self._rows(_PACKAGES, organization_id=client.organization_id)
            packages: list[PackageRow] = []
            service_ids: dict[uuid.UUID, list[uuid.UUID]] = {}
            for package_id, name, description, sessions, validity, amount, currency, service_id in rows:
                if package_id not in service_ids:
                    service_ids[package_id] = []
                    packages.append(
                        PackageRow(package_id, name, description, (), sessions, validity, amount, currency)
                    )
                if service_id is not None:
                    service_ids[package_id].append(service_id)
            packages = [replace(package, service_ids=tuple(service_ids[package.id])) for package in packages]
            catalog.packages = tuple(packages)
        return catalog.packages

    async def package(self, client: ApiClient, package_id: str) -> PackageRow:
        try:
            parsed = uuid.UUID(package_id)
        except ValueError:
            raise NotFound(f"No packages with id {package_id!r}.") from None
        for package in await self.packages(client):
            if package.id == parsed:
                return package
        raise NotFound(f"No packages with id {package_id!r}.")

    async def schedule(self, client: ApiClient) -> availability.Schedule:
        """Opening hours and every closure, in the organization's time zone (as the key lookup read it)."""
        catalog = self._catalog(client)
        if catalog.hours is None:
            hours: list[availability.OpeningRange] = []
            closures: list[availability.Closure] = []
            for weekday, opens_at, closes_at, first, last in await self._rows(
                _SCHEDULE, organization_id=client.organization_id
            ):
                if weekday is not None:
                    hours.append(availability.OpeningRange(weekday, _time(opens_at), _time(closes_at)))
                else:
                    closures.append(availability.Closure(_date(first), _date(last)))
            catalog.closures = tuple(sorted(closures, key=lambda closure: closure.first))
            catalog.hours = tuple(hours)
        return availability.Schedule(
            time_zone=ZoneInfo(client.time_zone),  # ZoneInfo keeps one instance per name
            opening_hours=catalog.hours,
            closures=catalog.closures,
        )

    async def occupancy(
        self, rules: SlotRules, service_id: uuid.UUID, first: datetime, last: datetime
    ) -> list[Occupancy]:
        """Confirmed reservations of the service that can overlap a slot starting between the two instants."""
        rows = await self._rows(OCCUPANCY, **occupancy_window(rules, service_id, first, last))
        return [Occupancy(*row) for row in rows]

    async def reservation(self, organization_id: uuid.UUID, public_id: str) -> ReservationView:
        """The reservation, if this organization's; anything else is simply not found."""
        rows = await self._rows(_RESERVATION, public_id=public_id, organization_id=organization_id)
        if not rows:
            raise NotFound(f"No reservation {public_id!r}.")
        return ReservationView(*rows[0])


def _time(value: Any) -> time:
    assert isinstance(value, time)
    return value


def _date(value: Any) -> date:
    assert isinstance(value, date)
    return value
