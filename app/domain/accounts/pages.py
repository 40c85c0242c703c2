"""Sign-in and sign-out pages."""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts import throttle
from app.domain.accounts.guards import SESSION_USER_KEY, landing_path
from app.domain.accounts.models import User
from app.domain.accounts.services import UserService, normalize_email
from app.domain.accounts.sessions import rotate_session
from app.domain.accounts.throttle import SignInThrottle

log = logging.getLogger(__name__)
SIGN_IN_FAILED = "Incorrect email or password."
SIGN_IN_UNAVAILABLE = "Sign-in is unavailable for a moment. Try again in a few seconds."


def safe_next_path(next_path: str | None) -> str:
    """Only local paths: a `next` pointing elsewhere would make the sign-in page an open redirect."""
    if next_path and next_path.startswith("/") and not next_path.startswith(("//", "/\\")):
        return next_path
    return "/"


@dataclass
class SignInForm:
    email: str = ""
    password: str = ""
    next: str = ""


def _wait_words(seconds: int) -> str:
    if seconds < 120:
        return f"Try again in {seconds} seconds."
    return f"Try again in {-(-seconds // 60)} minutes."


class AccountNotices(abc.ABC):
    """What sign-in tells the account's organization's admins. The audit log implements it (app.asgi wires it
    in): the audit context reads accounts, so accounts cannot import it. A class, not a Protocol: Litestar
    checks a dependency against its annotation."""

    @abc.abstractmethod
    async def sign_ins_slowed(
        self, session: AsyncSession, user: User, address: str, details: dict[str, Any]
    ) -> None: ...


async def _tell_admins(notices: AccountNotices, users_service: UserService, email: str, address: str) -> None:
    user = await users_service.get_one_or_none(email=normalize_email(email))
    if user is None:
        return
    await notices.sign_ins_slowed(
        users_service.repository.session,
        user,
        address,
        {
            "attempts": throttle.ACCOUNT_CEILING,
            "window_minutes": throttle.WINDOW_S // 60,
            "one_attempt_per_address_every_seconds": throttle.SLOWED_INTERVAL_S,
        },
    )


class AuthController(Controller):
    include_in_schema = False
    dependencies = {"users_service": create_service_provider(UserService)}

    @get("/login", name="login")
    async def show_sign_in(
        self,
        request: Request[Any, Any, Any],
        users_service: NamedDependency[UserService],
        next: FromQuery[str | None] = None,
        ended: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        # /login takes no auth middleware (it must show to visitors), so the session is read here.
        user_id = request.session.get(SESSION_USER_KEY) if request.session else None
        user = await users_service.get_one_or_none(id=user_id) if user_id else None
        if user is not None:
            return Redirect(safe_next_path(next) if next else landing_path(user), status_code=303)
        context = {"next": safe_next_path(next), "email": "", "session_ended": ended is not None}
        return Template("accounts/login.html", context=context)

    @post("/login", status_code=200)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        users_service: NamedDependency[UserService],
        redis: NamedDependency[Redis],
        account_notices: NamedDependency[AccountNotices],
        data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        sign_ins = SignInThrottle(redis)
        # The resolved client (TRUSTED_PROXIES), never a header the client wrote.
        address = request.client.host if request.client else "unknown"
        context = {"email": data.email, "next": safe_next_path(data.next)}
        try:
            reservation = await sign_ins.reserve(data.email, address)
        except (RedisError, OSError) as exc:
            # No attempt goes unthrottled, and a session could not be stored anyway: refuse, and say so.
            log.warning("sign-in refused: Redis unavailable: %s", exc)
            return Template(
                "accounts/login.html",
                context={**context, "error": SIGN_IN_UNAVAILABLE},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if not reservation.admitted:
            return Template(
                "accounts/login.html",
                context={
                    **context,
                    "error": f"Too many failed sign-ins. {_wait_words(reservation.wait_seconds)}",
                },
                status_code=429,
                headers={"Retry-After": str(reservation.wait_seconds)},
            )
        user = await users_service.authenticate(data.email, data.password)
        if user is None:
            if reservation.ceiling_reached:
                await _tell_admins(account_notices, users_service, data.email, address)
            return Template(
                "accounts/login.html", context={**context, "error": SIGN_IN_FAILED}, status_code=400
            )
        await sign_ins.record_success(data.email, address, reservation)
        rotate_session(request)
        request.set_session({SESSION_USER_KEY: str(user.id)})
        return Redirect(safe_next_path(data.next) if data.next else landing_path(user), status_code=303)

    @post("/logout", name="logout", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return Redirect("/login", status_code=303)
