"""Counts kept by the relay and reported by an asynchronous (observable) counter.

A synchronous OpenTelemetry counter checks and hashes its attributes on every ``add``; the relay
counts three things per request by a handful of fixed attribute sets, so it keeps the running
totals itself (a dictionary update under a lock) and the metric reader's callback reports them once
per collection. As OpenTelemetry defines an asynchronous counter, each report is the total since the
start, and the SDK turns it into the interval's delta (Azure Monitor's exporter asks for deltas).
Only the attribute sets that moved since the last report are reported: an attribute set without a
measurement yields no point, as with a synchronous counter that saw no ``add``.
"""

from __future__ import annotations

import threading

Attributes = tuple[tuple[str, str], ...]


class RunningTotals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[Attributes, int] = {}
        self._moved: set[Attributes] = set()

    def add(self, attributes: Attributes, amount: int) -> None:
        with self._lock:
            self._totals[attributes] = self._totals.get(attributes, 0) + amount
            self._moved.add(attributes)

    def take_moved(self) -> list[tuple[int, dict[str, str]]]:
        """Each attribute set that moved since the last call: its total since the start, and its attributes."""
        with self._lock:
            moved, self._moved = self._moved, set()
            return [(self._totals[attributes], dict(attributes)) for attributes in moved]
