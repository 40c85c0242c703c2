"""Sign-in throttling that holds under concurrency, on a real server (uvicorn, two worker processes).

Every attempt is reserved in Redis, in one round trip, before the password is checked: N simultaneous
attempts count as N. Limits are per account and address, and per address; failures for one account from
everywhere only slow that account down (one attempt per address every SLOWED_INTERVAL_S), never lock it,
and its organization's admins find a notice in the audit log.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from app.domain.accounts import throttle
from app.domain.audit.models import AuditEvent
from app.lib.db import transaction
from app.settings import Settings
from tests.fixtures.app import alchemy_of
from tests.fixtures.server import served
from tests.fixtures.staff import PASSWORD, Staff

pytestmark = pytest.mark.anyio


async def login_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/login")
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def attempt(
    client: httpx.AsyncClient, token: str, email: str, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    return await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {},
    )


async def test_simultaneous_attempts_on_one_account_count_as_many(
    http: httpx.AsyncClient, studio: Staff
) -> None:
    token = await login_token(http)
    passwords = ["wrong-guess"] * 19 + [PASSWORD]  # the right one last
    answers = await asyncio.gather(
        *(attempt(http, token, studio.admin.email, password) for password in passwords)
    )
    statuses = [answer.status_code for answer in answers]
    limit = throttle.MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS
    # Only as many were checked as the limit allows; every other one was refused, the right one included
    # unless it happened to be among the first.
    assert statuses.count(429) == len(passwords) - limit, statuses
    assert sorted(set(statuses) - {429}) in ([400], [303, 400])
    for answer in answers:
        if answer.status_code == 429:
            assert 1 <= int(answer.headers["retry-after"]) <= throttle.WINDOW_S


async def test_simultaneous_attempts_over_many_accounts_count_against_the_address(
    http: httpx.AsyncClient,
) -> None:
    token = await login_token(http)
    emails = [f"nobody-{n}@example.com" for n in range(40)]
    answers = await asyncio.gather(*(attempt(http, token, email, "wrong-guess") for email in emails))
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(400) == throttle.MAX_ATTEMPTS_PER_ADDRESS, statuses
    assert statuses.count(429) == len(emails) - throttle.MAX_ATTEMPTS_PER_ADDRESS


async def test_failures_from_elsewhere_slow_the_account_but_never_lock_its_owner_out(
    settings: Settings, app: Litestar, studio: Staff, tmp_path: Path
) -> None:
    attackers = -(-throttle.ACCOUNT_CEILING // throttle.MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS)
    with served(settings, tmp_path, TRUSTED_PROXIES="127.0.0.1") as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            token = await login_token(client)
            for n in range(attackers):
                for _ in range(throttle.MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS):
                    failed = await attempt(client, token, studio.admin.email, "wrong-guess", f"6.6.6.{n}")
                    assert failed.status_code == 400
            # Over the ceiling: a fresh address gets one attempt, then waits; it is not a lock-out.
            first = await attempt(client, token, studio.admin.email, "wrong-guess", "6.6.7.1")
            assert first.status_code == 400
            second = await attempt(client, token, studio.admin.email, "wrong-guess", "6.6.7.1")
            assert second.status_code == 429
            assert 1 <= int(second.headers["retry-after"]) <= throttle.SLOWED_INTERVAL_S
            # Another account is not slowed at all.
            other = await attempt(client, token, studio.staff.email, "wrong-guess", "6.6.7.2")
            again = await attempt(client, token, studio.staff.email, "wrong-guess", "6.6.7.2")
            assert (other.status_code, again.status_code) == (400, 400)
        # The owner, in their own browser from their own address, signs in at once.
        async with httpx.AsyncClient(base_url=url, timeout=60) as browser:
            owner = await attempt(
                browser, await login_token(browser), studio.admin.email, PASSWORD, "198.51.100.20"
            )
            assert owner.status_code == 303, owner.text
    async with transaction(alchemy_of(app)) as session:
        notices = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "account.sign_ins_slowed"))
        ).all()
    assert len(notices) == 1  # once per window, however many attempts follow
    [notice] = notices
    assert notice.organization_id == studio.organization.id
    assert notice.subject_id == studio.admin.id
    assert notice.subject_label == studio.admin.email
    assert notice.ip_address and notice.ip_address.startswith("6.6.6.")
