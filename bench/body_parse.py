"""What reading a request body costs the relay's event loop: ``parse_body`` on 4 MiB bodies, legitimate and hostile.

The relay parses a caller's body on its event loop, so the time one parse takes is a stall for every stream the
instance serves. Measured in this process (the function the relay runs, nothing around it): the median wall time of
a few parses, and the peak memory one parse allocates (tracemalloc, in a separate run so it does not slow the timing).
"""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from shared.errors import RelayError
from shared.request_policy import parse_body

MIB = 1024 * 1024
_CODE = "def f(x): return [x[i] for i in {1: [2], 3: [4]}]\n" * 25
_IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * (4 * MIB - 200)}}


def _many(item: bytes) -> bytes:
    count = (4 * MIB - 100) // (len(item) + 1)
    return b'{"messages":[{"role":"user","content":"hi"}],"tools":[' + b",".join([item] * count) + b"]}"


BODIES: dict[str, Callable[[], bytes]] = {
    "image data URL (4 MiB)": lambda: json.dumps({"messages": [{"role": "user", "content": [_IMAGE]}]}).encode(),
    "conversation, code with brackets (3.7 MiB)": lambda: json.dumps({"messages": [{"role": "user", "content": _CODE}] * 3000}).encode(),
    "1.4 M empty arrays (4 MiB)": lambda: _many(b"[]"),
    "1 M empty objects (4 MiB)": lambda: _many(b"{}"),
}


def _parse(raw: bytes) -> str:
    try:
        parse_body(raw)
    except RelayError:
        return "refused"
    return "parsed"


def measure(runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, make in BODIES.items():
        raw = make()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            outcome = _parse(raw)
            times.append((time.perf_counter() - started) * 1000)
        tracemalloc.start()
        try:
            _parse(raw)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out[name] = {"bytes": len(raw), "outcome": outcome, "ms": round(statistics.median(times), 1), "peak_mib": round(peak / MIB, 1)}
    return out
