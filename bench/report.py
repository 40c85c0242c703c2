"""Markdown tables from bench results: `python -m bench.report [latest.json] [before.json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.run import RESULTS


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def figures_table(after: dict[str, Any], before: dict[str, Any] | None) -> str:
    head = "| figure | " + ("before | " if before else "") + "value | unit | target | met |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, entry in after["figures"].items():
        old = before["figures"].get(name, {}).get("value", "") if before else None
        cells = [f"`{name}`", *([str(old)] if before else []), str(entry["value"]), entry["unit"]]
        cells += [entry.get("target", ""), {True: "yes", False: "**no**", None: ""}[entry.get("met")]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(results: dict[str, Any], leg: str, part: str) -> str:
    section = results[leg][part]
    lines = [
        "| run | guarded req/s | unguarded req/s | ratio | guard cost µs | server CPU µs/req g / u |",
        "|---|---|---|---|---|---|",
    ]
    for n, run in enumerate(section["runs"], 1):
        g, u = run["guarded"], run["unguarded"]
        lines.append(
            f"| {n} | {g['rps']} | {u['rps']} | {run['ratio']} | {run['guard_cost_us']} | "
            f"{g['server_cpu_us_per_request']} / {u['server_cpu_us_per_request']} |"
        )
    return "\n".join(lines)


def open_loop_table(results: dict[str, Any]) -> str:
    lines = [
        "| run | offered req/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in results["sqlite"]["open_loop"].items():
        if isinstance(run, dict):
            lat = run["latency_ms"]
            lines.append(
                f"| {name} | {run['target_rps']} | {run['achieved_rps']} | {lat.get('p50')} | {lat.get('p99')} | "
                f"{lat.get('p99.9')} | {lat.get('max')} | {run['errors']} |"
            )
    return "\n".join(lines)


def main() -> None:
    after = _load(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "latest.json")
    before = _load(Path(sys.argv[2])) if len(sys.argv) > 2 else None
    print(figures_table(after, before), end="\n\n")
    print(runs_table(after, "sqlite", "saturation_1_process"), end="\n\n")
    print(open_loop_table(after))


if __name__ == "__main__":
    main()
