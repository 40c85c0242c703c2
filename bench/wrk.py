"""Closed-loop saturation runs with wrk, rotating through many keys (each key's limit is at most 1000/min)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Each request carries the next key of the list; the same header goes to unguarded routes, so both
# sides send byte-for-byte the same requests apart from the path. Status counts come back from every thread.
LUA = r"""
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do
  if #line > 0 then keys[#keys + 1] = line end
end
local i = math.random(#keys)
local threads = {}
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  i = i + 1
  if i > #keys then i = 1 end
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. keys[i]})
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      merged[tostring(status)] = (merged[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", ")))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    statuses: dict[int, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        return self.requests - self.ok + self.socket_errors

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def ok_rps(self) -> float:
        return self.ok / self.duration_s

    def summary(self) -> dict[str, object]:
        return {
            "rps": round(self.rps, 1),
            "ok_rps": round(self.ok_rps, 1),
            "requests": self.requests,
            "errors": self.errors,
            "statuses": {str(status): n for status, n in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors,
            "closed_loop_p50_ms": self.p50_ms,
            "closed_loop_p99_ms": self.p99_ms,
        }


def ensure_wrk() -> str:
    """wrk on PATH; installed from Debian's packages when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install -y wrk)", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench: wrk is required: `sudo apt-get install -y wrk` (Debian/Ubuntu), then rerun.")


def write_script(directory: Path) -> Path:
    path = directory / "rotate_keys.lua"
    path.write_text(LUA)
    return path


def run_wrk(
    wrk: str,
    script: Path,
    keys_file: Path,
    url: str,
    duration_s: float,
    connections: int = 32,
    threads: int = 1,
    cpus: str | None = "1",
) -> WrkResult:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_KEYS": str(keys_file)},
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("BENCHJSON "))
    data = json.loads(line.removeprefix("BENCHJSON "))
    socket_errors = sum(data[name] for name in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        statuses={int(status): int(n) for status, n in data["statuses"].items()},
        socket_errors=socket_errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
