"""`python -m app.server` (the Procfile's web process, and `make run`'s): X-Forwarded-For is believed only
from TRUSTED_PROXIES, and request lines are logged only with ACCESS_LOG=1, never with their query strings nor a key pasted into
their paths."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import select
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.domain.audit.models import AuditEvent
from app.lib.db import transaction
from app.server import APP, uvicorn_options
from app.settings import Settings
from tests.api_helpers import make_key
from tests.fixtures.app import alchemy_of
from tests.fixtures.server import served
from tests.fixtures.staff import PASSWORD, Staff
from tests.secret_scanning_helpers import REPORT_PATH, GitHubSigner, report_body

pytestmark = pytest.mark.anyio


def page_token(page: httpx.Response) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def sign_in_attempt(
    client: httpx.AsyncClient, email: str, password: str, forwarded_for: str
) -> httpx.Response:
    token = page_token(await client.get("/login"))
    return await client.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
    )


async def audit_addresses(app: Litestar) -> list[str | None]:
    async with transaction(alchemy_of(app)) as session:
        return list(
            (await session.scalars(select(AuditEvent.ip_address).order_by(AuditEvent.created_at))).all()
        )


async def create_key_from(client: httpx.AsyncClient, staff: Staff, forwarded_for: str) -> None:
    signed_in = await sign_in_attempt(client, staff.admin.email, PASSWORD, forwarded_for)
    assert signed_in.status_code == 303, signed_in.text
    token = page_token(await client.get("/settings/api-keys/new"))
    created = await client.post(
        "/settings/api-keys",
        data={"name": "Widget", "scopes": ["read"], "_csrf_token": token},
        headers={"HX-Request": "true", "X-Forwarded-For": forwarded_for},
    )
    assert created.status_code == 201, created.text


async def test_by_default_forwarded_for_is_not_believed_and_nothing_is_access_logged(
    settings: Settings, app: Litestar, studio: Staff, tmp_path: Path
) -> None:
    key = await make_key(app, studio)
    with served(settings, tmp_path) as (url, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # X-Forwarded-For from loopback: a new made-up address per attempt does not get round the
            # per-account-and-address limit.
            answers = [
                (await sign_in_attempt(client, studio.staff.email, "wrong-guess", f"6.6.6.{n}")).status_code
                for n in range(6)
            ]
            assert answers == [400] * 5 + [429]
            await create_key_from(client, studio, "6.6.6.6")
            await client.get("/api/v1/services", params={"api_key": key})
            await client.get("/api/v1/services", headers={"Authorization": f"Bearer {key}"})
    assert await audit_addresses(app) == [None, "127.0.0.1"]  # the CLI's key, then the page's
    text = log.read_text()
    assert key not in text
    assert "/api/v1/services" not in text
    assert "/login" not in text


async def test_behind_trusted_proxies_the_client_is_resolved_and_access_lines_lose_their_queries(
    settings: Settings, app: Litestar, studio: Staff, tmp_path: Path
) -> None:
    key = await make_key(app, studio)
    with served(settings, tmp_path, TRUSTED_PROXIES="127.0.0.1", ACCESS_LOG="1") as (url, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # Each attempt comes from another client: none of them reaches a limit.
            answers = [
                (
                    await sign_in_attempt(client, studio.admin.email, "wrong-guess", f"203.0.113.{n}")
                ).status_code
                for n in range(6)
            ]
            assert answers == [400] * 6
            # From one client (behind the proxy) the limit holds, whatever it writes to the left.
            answers = [
                (
                    await sign_in_attempt(
                        client, studio.staff.email, "wrong-guess", f"6.6.6.{n}, 198.51.100.4"
                    )
                ).status_code
                for n in range(6)
            ]
            assert answers == [400] * 5 + [429]
            await create_key_from(client, studio, "1.2.3.4, 198.51.100.7")
            await client.get("/api/v1/services", params={"api_key": key, "limit": "5"})
            await client.get(f"/api/v1/nowhere?api_key={key}")
            await client.get(f"/api/v1/services/{key}", headers={"Authorization": f"Bearer {key}"})
            await client.get(f"/api/v1/{key[:-6]}/services")
    assert await audit_addresses(app) == [None, "198.51.100.7"]
    text = log.read_text()
    assert key not in text
    assert "?" not in "".join(line for line in text.splitlines() if "HTTP/1.1" in line)
    assert re.search(r'"GET /api/v1/services HTTP/1\.1" \d{3}', text), text
    assert re.search(r'"GET /api/v1/nowhere HTTP/1\.1" \d{3}', text), text
    # A key in the path, whole or cut short, is logged as the prefix the key page shows.
    assert key[:-6] not in text
    shown = re.escape(key[:14])
    assert re.search(rf'"GET /api/v1/services/{shown}\.\.\. HTTP/1\.1" \d{{3}}', text), text
    assert re.search(rf'"GET /api/v1/{shown}\.\.\./services HTTP/1\.1" \d{{3}}', text), text
    # The access line names the client, not the proxy.
    assert re.search(r'198\.51\.100\.7:\d+ - "POST /settings/api-keys HTTP/1\.1" 201', text), text


async def test_web_concurrency_sets_the_number_of_worker_processes(
    settings: Settings, tmp_path: Path
) -> None:
    with served(settings, tmp_path, WEB_CONCURRENCY="2") as (url, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/health")).status_code == 200
            for _ in range(300):  # both workers report their start; this bounds a broken start only
                if log.read_text().count("Started server process") >= 2:
                    break
                await anyio.sleep(0.1)
    text = log.read_text()
    assert len(set(re.findall(r"Started server process \[(\d+)\]", text))) == 2, text


async def test_secret_scanning_reports_are_limited_per_resolved_client_behind_trusted_proxies(
    settings: Settings, tmp_path: Path
) -> None:
    from app.api.secret_scanning import REPORTS_PER_MINUTE

    signer = GitHubSigner()
    keys_file = signer.write_keys_file(tmp_path / "github-keys.json")
    body = report_body("not-a-key")
    env = {"TRUSTED_PROXIES": "127.0.0.1", "GITHUB_SECRET_SCANNING_KEYS_FILE": str(keys_file)}
    with served(settings, tmp_path, **env) as (url, _log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def forged_from(address: str) -> int:
                headers = {"X-Forwarded-For": address}
                return (await client.post(REPORT_PATH, content=body, headers=headers)).status_code

            assert [await forged_from("203.0.113.9") for _ in range(REPORTS_PER_MINUTE)] == [
                401
            ] * REPORTS_PER_MINUTE
            # The proxy's own address is not the one counted: another client behind it is still answered.
            assert await forged_from("203.0.113.9") == 429
            assert await forged_from("198.51.100.20") == 401


def test_the_server_runs_on_uvloop_and_httptools(settings: Settings) -> None:
    """The speedups are production dependencies and the server command names them (a missing one fails the
    start instead of silently serving on asyncio's loop and the pure-Python parser)."""
    config = uvicorn.Config(APP, **uvicorn_options(settings))
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    assert config.loop == "uvloop"
    production = [
        requirement
        for requirement in importlib.metadata.requires("quickvisit-booking") or []
        if "extra ==" not in requirement
    ]
    assert any(r.startswith("uvloop") for r in production) and any(
        r.startswith("httptools") for r in production
    )
