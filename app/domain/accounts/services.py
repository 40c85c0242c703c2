"""Accounts: organizations, staff users, passwords and sign-in."""

from __future__ import annotations

import re
import threading
import zoneinfo
from dataclasses import dataclass

import anyio.to_thread
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.domain.accounts.models import ROLES, Organization, User

_hasher = PasswordHasher()
# Each Argon2 computation takes 64 MiB: a burst of sign-ins waits for a slot rather than exhausting memory.
_HASHING_SLOTS = threading.BoundedSemaphore(4)
# Verified against when the email is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN_LENGTH = 8


class InvalidAccountData(ValueError):
    """A field of an organization or user is not acceptable; the message says which and why."""


def hash_password(password: str) -> str:
    with _HASHING_SLOTS:
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        with _HASHING_SLOTS:
            return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class NewOrganization:
    name: str
    slug: str
    time_zone: str

    @classmethod
    def validate(cls, *, name: str, slug: str, time_zone: str) -> NewOrganization:
        name, slug, time_zone = name.strip(), slug.strip().lower(), time_zone.strip()
        if not name:
            raise InvalidAccountData("Organization name is required.")
        if not SLUG_PATTERN.match(slug):
            raise InvalidAccountData(
                f"Slug {slug!r} must be 1-64 lower-case letters, digits or dashes, not starting or ending with a dash."
            )
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidAccountData(
                f"{time_zone!r} is not an IANA time zone (e.g. Europe/London)."
            ) from None
        return cls(name=name, slug=slug, time_zone=time_zone)


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str
    password: str
    role: str

    @classmethod
    def validate(cls, *, email: str, password: str, role: str) -> NewUser:
        email = normalize_email(email)
        if not EMAIL_PATTERN.match(email):
            raise InvalidAccountData(f"{email!r} is not an email address.")
        if len(password) < PASSWORD_MIN_LENGTH:
            raise InvalidAccountData(f"Password must be at least {PASSWORD_MIN_LENGTH} characters.")
        if role not in ROLES:
            raise InvalidAccountData(f"Role must be one of: {', '.join(ROLES)}.")
        return cls(email=email, password=password, role=role)


class OrganizationService(SQLAlchemyAsyncRepositoryService[Organization]):
    class Repo(SQLAlchemyAsyncRepository[Organization]):
        model_type = Organization

    repository_type = Repo

    async def create_organization(self, data: NewOrganization) -> Organization:
        if await self.exists(slug=data.slug):
            raise InvalidAccountData(f"An organization with slug {data.slug!r} already exists.")
        return await self.create(Organization(name=data.name, slug=data.slug, time_zone=data.time_zone))

    async def get_by_slug(self, slug: str) -> Organization:
        organization = await self.get_one_or_none(slug=slug.strip().lower())
        if organization is None:
            raise InvalidAccountData(f"No organization with slug {slug!r}.")
        return organization


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def create_user(self, organization: Organization, data: NewUser) -> User:
        if await self.exists(email=data.email):
            raise InvalidAccountData(f"A user with email {data.email!r} already exists.")
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
        return await self.create(
            User(email=data.email, password_hash=password_hash, role=data.role, organization=organization)
        )

    async def authenticate(self, email: str, password: str) -> User | None:
        """The user for these credentials, or None; never says which of the two was wrong."""
        user = await self.get_one_or_none(email=normalize_email(email))
        password_hash = user.password_hash if user else _DUMMY_HASH
        # Argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        ok = await anyio.to_thread.run_sync(verify_password, password_hash, password)
        return user if ok and user is not None else None
