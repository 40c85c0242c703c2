"""Browser tests: the real app (uvicorn) and SAQ worker as subprocesses, Debian's Chromium driven by Playwright.

One app, worker, database and browser serve every test of this package (starting them is most of the cost);
each test gets fresh browser contexts, so cookies and permissions never leak between tests. A failing test
leaves a screenshot and the HTML of every page it had open, and the app's log, under test-artifacts/browser/.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright
from sqlalchemy import select, update

from app import devsite
from app.demo import DEMO_PASSWORD, seed_demo
from app.domain.accounts.models import Organization
from app.domain.api_keys import rules
from app.domain.api_keys.models import ApiKey
from app.domain.api_keys.services import ApiKeyService
from app.domain.audit.services import CLI_ACTOR
from app.domain.booking.models import Reservation, Service
from app.lib.db import create_alchemy_config, transaction
from app.settings import PROJECT_ROOT, Settings
from tests.browser.a11y import SCREENS
from tests.fixtures.database import DatabaseTemplate, fresh_database
from tests.secret_scanning_helpers import GitHubSigner

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
INSTALL_HINT = "Browser tests need Debian's chromium: sudo apt-get install -y chromium"
# Playwright cannot download its own browser here; Debian's runs headless with these. Without the
# background-networking flags Chromium keeps trying to reach Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 30
# Waiting for a condition, never a measurement: generous so a loaded CI machine does not fail a healthy test.
ACTION_TIMEOUT_MS = 15_000

ADMIN_EMAIL = "demo@example.com"
STAFF_EMAIL = "staff@example.com"
# Every page the tests open sees the visitor in New York with British formats, so a time shown in the
# studio's London zone by mistake cannot pass for the visitor's own.
VISITOR_TIME_ZONE = "America/New_York"
VISITOR_LOCALE = "en-GB"

T = TypeVar("T")
CONTEXTS = pytest.StashKey[list[BrowserContext]]()
LIVE_APP = pytest.StashKey["LiveApp"]()


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from a test. Not with asyncio.run here: sync Playwright keeps an event
    loop running on the main thread, so the coroutine gets a thread and a loop of its own."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveApp:
    url: str
    settings: Settings
    log: Path
    # Signs secret-scanning reports as GitHub would; the app reads its public key from a keys file.
    github: GitHubSigner

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def issue_key(self, name: str, *, origins: str = "", rate_limit: int = 1000) -> str:
        """A read-and-write key of the demo organization, issued through the real service."""
        request = rules.validate_key_request(
            name=name, scopes=rules.SCOPES, origins=origins, rate_limit=rate_limit, expires_in_days=None
        )

        async def issue() -> str:
            alchemy = create_alchemy_config(self.settings)
            try:
                async with transaction(alchemy) as session:
                    demo_id = await session.scalar(select(Organization.id).where(Organization.slug == "demo"))
                    assert demo_id is not None, "live_app seeds the demo organization"
                    issued = await ApiKeyService(session=session).issue(
                        demo_id, request, actor=CLI_ACTOR, now=datetime.now(UTC)
                    )
                    return issued.secret
            finally:
                await alchemy.get_engine().dispose()

        return run_async(issue)

    def change_key(self, secret: str, **columns: Any) -> None:
        """Set a key's columns (expires_at, revoked_at) in the database, as time or another admin would."""

        async def change() -> None:
            alchemy = create_alchemy_config(self.settings)
            try:
                async with transaction(alchemy) as session:
                    changed = await session.execute(
                        update(ApiKey).where(ApiKey.key_hash == rules.hash_key(secret)).values(**columns)
                    )
                    assert changed.rowcount == 1  # type: ignore[attr-defined]
            finally:
                await alchemy.get_engine().dispose()

        run_async(change)

    def add_reservation(
        self,
        service_name: str,
        start: datetime,
        *,
        customer_name: str,
        phone: str | None = None,
        notes: str = "",
    ) -> str:
        """A reservation of the demo organization written straight to the database; its public id."""

        async def add() -> str:
            alchemy = create_alchemy_config(self.settings)
            try:
                async with transaction(alchemy) as session:
                    service = await session.scalar(select(Service).where(Service.name == service_name))
                    assert service is not None, f"the demo has a service {service_name!r}"
                    reservation = Reservation(
                        organization_id=service.organization_id,
                        service_id=service.id,
                        start_at=start.astimezone(UTC),
                        end_at=start.astimezone(UTC) + timedelta(minutes=service.duration_minutes),
                        party_size=1,
                        status="confirmed",
                        customer_name=customer_name,
                        customer_email=f"{customer_name.split()[0].lower()}@example.com",
                        customer_phone=phone,
                        notes=notes,
                    )
                    session.add(reservation)
                    await session.flush()
                    return reservation.public_id
            finally:
                await alchemy.get_engine().dispose()

        return run_async(add)


def _seed(settings: Settings) -> None:
    async def seed() -> None:
        alchemy = create_alchemy_config(settings)
        try:
            async with transaction(alchemy) as session:
                await seed_demo(session)
        finally:
            await alchemy.get_engine().dispose()

    run_async(seed)


@pytest.fixture(scope="package")
def live_settings(
    tmp_path_factory: pytest.TempPathFactory, database_template: DatabaseTemplate, redis_url: str
) -> Iterator[Settings]:
    """Like the `settings` fixture, once for the package: a copy of the migrated template database."""
    with fresh_database(
        database_template, redis_url, tmp_path_factory.mktemp("live"), name_prefix="qv_browser"
    ) as fresh:
        yield fresh


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with code {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the app did not answer /health within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@contextmanager
def running_app(
    settings: Settings, log: Path, github: GitHubSigner, *, worker: bool = True, **environment: str
) -> Iterator[LiveApp]:
    """The app under uvicorn (and, unless told otherwise, the SAQ worker) on `settings`, until the block ends."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TEST_") and key not in ("SECRET_KEY", "PORT")
    }
    env.update(
        APP_ENV="dev",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DATA_DIR=str(settings.data_dir),
        SECRET_KEY=settings.secret_key,
        PORT=str(port),
        LITESTAR_APP="app.asgi:create_app",
        **environment,
    )
    processes: list[subprocess.Popen[bytes]] = []
    with log.open("wb") as output:
        processes.append(
            subprocess.Popen(  # noqa: S603  (fixed executables from the venv)
                [
                    str(BIN / "uvicorn"),
                    "--factory",
                    "app.asgi:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        )
        if worker:
            processes.append(
                subprocess.Popen(  # noqa: S603
                    [str(BIN / "saq"), "app.workers.worker_settings"],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    app = LiveApp(url=f"http://127.0.0.1:{port}", settings=settings, log=log, github=github)
    try:
        _wait_until_healthy(app.url, processes[0], log)
        yield app
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="package")
def live_app(live_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The app under uvicorn and the SAQ worker, on the package's database and Redis, with the demo data."""
    _seed(live_settings)
    github = GitHubSigner()
    keys_file = github.write_keys_file(live_settings.data_dir / "github-secret-scanning-keys.json")
    log = tmp_path_factory.mktemp("logs") / "app.log"
    with running_app(live_settings, log, github, GITHUB_SECRET_SCANNING_KEYS_FILE=str(keys_file)) as app:
        yield app


@pytest.fixture(scope="package")
def playwright_driver(live_app: LiveApp) -> Iterator[Playwright]:
    # After the app: sync Playwright keeps an event loop running on this thread until it stops, and the
    # fixtures that prepare the app's database (the PostgreSQL template's too) call asyncio.run.
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found. {INSTALL_HINT}", pytrace=False)
    # Playwright gives every launch a new, empty profile (user data dir) of its own.
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    yield browser
    browser.close()


NewContext = Callable[..., BrowserContext]


@pytest.fixture(params=sorted(SCREENS))
def screen(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs at 1280 px ("desktop") and at 390 px ("phone"): a11y.SCREENS."""
    name: str = request.param
    return name


@pytest.fixture
def on_screen(new_context: NewContext, screen: str) -> NewContext:
    """new_context at the screen's size (and, for the phone, with touch)."""

    def make(**options: Any) -> BrowserContext:
        size = {"viewport": SCREENS[screen]}
        if screen == "phone":
            size.update(has_touch=True, is_mobile=True, device_scale_factor=2)
        return new_context(**{**size, **options})

    return make


@pytest.fixture
def new_context(browser: Browser, live_app: LiveApp, request: pytest.FixtureRequest) -> Iterator[NewContext]:
    """Fresh browser contexts for this test, remembered so a failure can save what their pages show."""
    contexts: list[BrowserContext] = []
    request.node.stash[CONTEXTS] = contexts
    request.node.stash[LIVE_APP] = live_app

    def make(**options: Any) -> BrowserContext:
        settings: dict[str, Any] = {
            "base_url": live_app.url,
            "locale": VISITOR_LOCALE,
            "timezone_id": VISITOR_TIME_ZONE,
            "viewport": {"width": 1200, "height": 900},
        }
        settings.update(options)
        context = browser.new_context(**settings)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def demo_site() -> Iterator[Callable[[str, str], devsite.DemoSiteServer]]:
    """Serve the demo website on a free port: start(api_url, key); the key can be set later with embed()."""
    servers: list[devsite.DemoSiteServer] = []

    def start(api_url: str, key: str) -> devsite.DemoSiteServer:
        server = devsite.start(api_url, key)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sign_in(context: BrowserContext, email: str, password: str = DEMO_PASSWORD) -> Page:
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def go_back(page: Page) -> None:
    """Back, and wait for the page it lands on: htmx keeps no history cache here (historyCacheSize 0), so
    on an entry it pushed it reloads the address after the URL has already changed; a step taken before
    that load would be interrupted by it."""
    with page.expect_event("load"):
        page.go_back()


def go_forward(page: Page) -> None:
    """Forward, and wait for the page it lands on (see go_back)."""
    with page.expect_event("load"):
        page.go_forward()


def _save_artifacts(item: pytest.Item) -> Path | None:
    contexts = item.stash.get(CONTEXTS, [])
    live_app = item.stash.get(LIVE_APP, None)
    if not contexts and live_app is None:
        return None
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    number = 0
    for context in contexts:
        for page in context.pages:
            number += 1
            try:
                page.screenshot(path=str(folder / f"page-{number}.png"), full_page=True)
                (folder / f"page-{number}.html").write_text(f"<!-- {page.url} -->\n{page.content()}")
            except Exception as error:  # a crashed or closed page must not hide the test's own failure
                (folder / f"page-{number}.error.txt").write_text(f"{page.url}: {error!r}\n")
    if live_app is not None and live_app.log.exists():
        shutil.copyfile(live_app.log, folder / "app.log")
    return folder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        folder = _save_artifacts(item)
        if folder is not None:
            report.sections.append(
                ("browser artifacts", f"Screenshots, page HTML and the app's log: {folder}")
            )
    return report
