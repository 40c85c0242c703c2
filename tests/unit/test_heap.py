"""The heap settings the web and worker processes apply when they start."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.lib.heap import collect_young_less_often, freeze_startup_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_startup_heap_is_frozen_out_of_full_collections(restored_gc: None) -> None:
    survivor = [object() for _ in range(100)]
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(survivor)


def test_the_worker_collects_young_objects_less_often(restored_gc: None) -> None:
    collect_young_less_often(50_000)
    assert gc.get_threshold()[0] == 50_000
