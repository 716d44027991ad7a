"""The garbage collector's work in a process under test, for ``python -m bench.profile_worker --gc``.

Put on ``PYTHONPATH`` with ``BENCH_GC_WATCH_DIR`` set, Python imports this at start-up in every
process so started (the host stand-in and its worker alike). Each one times its collections by
generation (``gc.callbacks``) and rewrites ``gc-<pid>.json`` there every half second with running
totals: collections, their summed and longest pause in milliseconds, and the objects they found
unreachable (cyclic garbage: what reference counting alone did not free). A reader takes the
difference of two readings for its window. It shadows any other ``sitecustomize`` on the path.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

_PERIOD_S = 0.5


class _Totals:
    """Running totals per generation, kept by a ``gc.callbacks`` hook."""

    def __init__(self) -> None:
        self.generations: dict[str, dict[str, float]] = {
            str(generation): {"collections": 0, "pause_ms": 0.0, "longest_ms": 0.0, "unreachable": 0} for generation in range(3)
        }
        self._started = 0.0

    def on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._started) * 1000
        generation = self.generations[str(info["generation"])]
        generation["collections"] += 1
        generation["pause_ms"] += pause_ms
        generation["longest_ms"] = max(generation["longest_ms"], pause_ms)
        generation["unreachable"] += info["collected"] + info["uncollectable"]


def _write_every_period(totals: _Totals, out: Path) -> None:
    partial = out.with_suffix(".part")
    while True:
        partial.write_text(json.dumps({"at": time.monotonic(), "generations": totals.generations}), encoding="utf-8")
        partial.replace(out)
        time.sleep(_PERIOD_S)


_directory = os.environ.get("BENCH_GC_WATCH_DIR")
if _directory:
    _totals = _Totals()
    gc.callbacks.append(_totals.on_collection)  # before start-up goes on, so that no collection is missed
    _out = Path(_directory) / f"gc-{os.getpid()}.json"
    threading.Thread(target=_write_every_period, args=(_totals, _out), name="bench-gc-watch", daemon=True).start()
