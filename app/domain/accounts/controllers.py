"""Sign-in and sign-out pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from redis.asyncio import Redis

from app.domain.accounts.guards import SESSION_USER_KEY
from app.domain.accounts.services import UserService
from app.domain.accounts.sessions import rotate_session
from app.domain.accounts.throttle import SignInThrottle

SIGN_IN_FAILED = "Incorrect email or password."


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


class AuthController(Controller):
    include_in_schema = False
    dependencies = {"users_service": create_service_provider(UserService)}

    @get("/login", name="login")
    async def show_sign_in(self, next: FromQuery[str | None] = None) -> Template:
        return Template("accounts/login.html", context={"next": safe_next_path(next), "email": ""})

    @post("/login", status_code=200)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        users_service: NamedDependency[UserService],
        redis: NamedDependency[Redis],
        data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        throttle = SignInThrottle(redis)
        address = request.client.host if request.client else "unknown"
        context = {"email": data.email, "next": safe_next_path(data.next)}
        if wait := await throttle.wait_seconds(data.email, address):
            minutes = -(-wait // 60)
            return Template(
                "accounts/login.html",
                context={**context, "error": f"Too many failed sign-ins. Try again in {minutes} minute(s)."},
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        user = await users_service.authenticate(data.email, data.password)
        if user is None:
            await throttle.record_failure(data.email, address)
            return Template(
                "accounts/login.html", context={**context, "error": SIGN_IN_FAILED}, status_code=400
            )
        await throttle.record_success(data.email, address)
        rotate_session(request)
        request.set_session({SESSION_USER_KEY: str(user.id)})
        return Redirect(safe_next_path(data.next), status_code=303)

    @post("/logout", name="logout", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return Redirect("/login", status_code=303)
