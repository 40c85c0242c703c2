"""`make bench-profile`: where the guarded request's CPU goes, sampled by py-spy on the pinned server under load.

Writes bench/results/profile-<route>.txt (functions by own and by inclusive share of samples) and a
speedscope file next to it (open it at speedscope.app, or in any speedscope viewer).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.settings import Settings
from bench.run import GUARDED, RESULTS, SECRET, log
from bench.seed import seed, write_keys
from bench.servers import BIN, free_port, start_web, valkey
from bench.wrk import ensure_wrk, run_wrk, write_script


def ensure_py_spy() -> str:
    found = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if found:
        return found
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return str(BIN / "py-spy")


def summarize(collapsed: Path, top: int = 40) -> str:
    """Own and inclusive sample shares per function, from py-spy's collapsed ("raw") stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own %   function"]
    lines += [f"{n / total * 100:5.1f}   {frame}" for frame, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{n / total * 100:5.1f}   {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", default=GUARDED)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    wrk, py_spy = ensure_wrk(), ensure_py_spy()
    label = args.label or args.path.strip("/").replace("/", "-")
    with tempfile.TemporaryDirectory(prefix="qv-profile-") as tmp_name, valkey() as redis_url:
        tmp = Path(tmp_name)
        settings = Settings.from_env(
            {"APP_ENV": "dev", "DATA_DIR": str(tmp), "REDIS_URL": redis_url, "SECRET_KEY": SECRET}
        )
        seeded = seed(settings, 2000, 1000)
        keys_file = write_keys(seeded, tmp / "keys.txt")
        env = {
            "APP_ENV": "dev",
            "DATA_DIR": str(tmp),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": SECRET,
            "BENCH_ORG_ID": str(seeded.organization_id),
        }
        port = free_port()
        server = start_web("web-profile", env, port, 1, "0", tmp)
        script = write_script(tmp)
        url = f"http://127.0.0.1:{port}{args.path}"
        try:
            run_wrk(wrk, script, keys_file, url, 3)
            raw = tmp / "profile.txt"
            speedscope = RESULTS / f"profile-{label}.speedscope.json"
            RESULTS.mkdir(parents=True, exist_ok=True)
            recorders = [
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        str(args.seconds),
                        "--rate",
                        "200",
                        "--format",
                        fmt,
                        "--output",
                        str(out),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for fmt, out in (("raw", raw), ("speedscope", speedscope))
            ]
            result = run_wrk(wrk, script, keys_file, url, args.seconds)
            for recorder in recorders:
                recorder.wait(timeout=args.seconds + 30)
            report = RESULTS / f"profile-{label}.txt"
            report.write_text(f"{url}: {result.rps:.0f} req/s under py-spy\n\n" + summarize(raw))
            log(f"wrote {report} and {speedscope}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
