"""Small, dependency-free statistics for latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of unsorted ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """Count, mean and p50/p95/p99/max of samples in seconds, as milliseconds."""
    ms = [v * 1000.0 for v in values_s]
    out: dict[str, float] = {"n": float(len(ms))}
    if not ms:
        return out
    out["mean"] = round(sum(ms) / len(ms), 4)
    for pct in PERCENTILES:
        out[f"p{pct}"] = round(percentile(ms, pct), 4)
    out["max"] = round(max(ms), 4)
    return out


def added_ms(direct: dict[str, float], relayed: dict[str, float]) -> dict[str, float]:
    """What the relay adds: relayed minus direct, percentile by percentile (ms)."""
    return {
        f"p{pct}": round(relayed[f"p{pct}"] - direct[f"p{pct}"], 4) for pct in PERCENTILES if f"p{pct}" in direct and f"p{pct}" in relayed
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 when undefined)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
