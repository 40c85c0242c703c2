"""The process heap, tuned for a long-running server (web or worker)."""

from __future__ import annotations

import gc

# The worker's young-generation threshold (CPython's default is 700 net allocations): a usage batch alone
# is thousands of objects, and each young collection walks them all again while they are still in use.
WORKER_YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """What starting the process allocated (modules, routes, mappers, templates) lives as long as it does:
    frozen, it is no longer traversed by full garbage collections, which otherwise stall every request in
    flight for ~120 ms several times a minute under load (docs/BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


def collect_young_less_often(threshold: int) -> None:
    """For the worker only: in the web process, larger young collections are pauses of tens of ms."""
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
