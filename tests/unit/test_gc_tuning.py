"""shared.gc_tuning: a relay process collects its young generation less often and never re-walks what exists at start-up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.gc_tuning import OLDER_THRESHOLD, YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_raises_the_thresholds_and_freezes_what_exists() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_garbage_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD) == (10_000, 10, 10)
    assert gc.get_freeze_count() > 0
