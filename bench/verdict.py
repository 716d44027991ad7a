"""The bench's targets, and the verdict: which misses decide the exit status and which are informational.

A machine four times slower is four times slower on every path, the emulator called directly
included, so a limit in milliseconds (or megabytes) measured on one machine says little on
another. What carries across machines is a ratio of two figures measured in the same run (the
relay against the bare passthrough, against the platform floor, against the emulator called
directly, a control on against off) and a count of events that must not happen (failed requests,
chunks coalesced, token requests on the warm path). Those decide the exit status; the absolute
figures are checked against their limits too and printed beside them, but a miss there is
informational.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["ratio", "count", "absolute"]
DECIDING: frozenset[Kind] = frozenset({"ratio", "count"})


@dataclass(frozen=True)
class Target:
    name: str
    limit: float
    unit: str
    path: tuple[str, ...]  # where the measured value sits in the results
    kind: Kind
    at_least: bool = False  # the value must reach the limit (a knee), not stay under it

    @property
    def decides(self) -> bool:
        return self.kind in DECIDING


def _absolute(name: str, limit: float, unit: str, *path: str) -> Target:
    return Target(name, limit, unit, path, "absolute")


def _count(name: str, limit: float, *path: str) -> Target:
    return Target(name, limit, "", path, "count")


def _ratio(name: str, limit: float, *path: str, at_least: bool = False) -> Target:
    return Target(name, limit, "x", path, "ratio", at_least)


TARGETS: tuple[Target, ...] = (
    _absolute("added p50, non-streamed, concurrency 1", 1.0, "ms", "latency", "c1", "added", "p50"),
    _absolute("added p99, non-streamed, concurrency 1", 5.0, "ms", "latency", "c1", "added", "p99"),
    _absolute("added p50, non-streamed, concurrency 16", 3.0, "ms", "latency", "c16", "added", "p50"),
    _absolute("added time to first content chunk p50, streamed", 1.0, "ms", "streaming", "added_first_content", "p50"),
    _absolute("inter-chunk gap distortion (worst of |Δp50|, |Δp95|)", 1.0, "ms", "chunk_gaps", "distortion_ms"),
    _count("chunks coalesced by the relay", 0.0, "chunk_gaps", "relay_coalesced"),
    _count("managed-identity token requests per 1,000 relayed (warm)", 0.0, "identity", "token_requests_per_1000"),
    _absolute("cold start to first relayed completion (median)", 1500.0, "ms", "cold_start", "first_completion_ms", "median"),
    _absolute("import function_app (median)", 600.0, "ms", "import", "function_app_ms", "median"),
    _absolute("relay RSS after the soak", 120.0, "MB", "memory", "rss_after_mb"),
    _absolute("relay RSS growth over the second half of the soak", 2.0, "MB", "memory", "second_half_growth_mb"),
    _count("failed requests", 0.0, "errors", "total"),
    # One parse is a stall of the event loop: a legitimate 4 MiB body, and the hostile one refused before it is built.
    _absolute("parse a 4 MiB body (an image data URL)", 15.0, "ms", "body_parse", "image data URL (4 MiB)", "ms"),
    _absolute("refuse a 4 MiB body of 1.4 M empty arrays", 50.0, "ms", "body_parse", "1.4 M empty arrays (4 MiB)", "ms"),
    # Telemetry to Azure Monitor on against off, paired in the same run (bench/telemetry_cost.py).
    _ratio("relay CPU per request, telemetry on / off", 1.10, "telemetry", "cpu_ratio"),
    _absolute("cold start to first completion, telemetry configured minus off (median)", 300.0, "ms", "telemetry", "cold_start_added_ms"),
    _count("failed requests in the telemetry comparison", 0.0, "telemetry", "errors"),
    _absolute("added p50 with the block list and budgets on (vs off), concurrency 1", 0.25, "ms", "controls", "c1", "added", "p50"),
    _absolute("added p50 with the block list and budgets on (vs off), concurrency 16", 0.5, "ms", "controls", "c16", "added", "p50"),
    # The two limits above over the relay's latency with both controls off on the machine they were set on
    # (0.83 ms at concurrency 1, 5.8 ms at 16: docs/performance.md).
    _ratio("relay latency p50, block list and budgets on / off, concurrency 1", 1.3, "controls_ratios", "c1_p50"),
    _ratio("relay latency p50, block list and budgets on / off, concurrency 16", 1.09, "controls_ratios", "c16_p50"),
    _count("table requests per 1,000 requests with both controls on", 10.0, "controls", "table_requests_per_1000"),
    _count("failed requests in the controls comparison", 0.0, "controls", "errors"),
    # What the relay adds over what a bare passthrough adds (bench/floor.py), both against the emulator called directly.
    _ratio("relay-added / floor-added, non-streamed p50, concurrency 1", 2.0, "floor_ratios", "c1_p50", "ratio"),
    _ratio("relay-added / floor-added, non-streamed p99, concurrency 1", 2.0, "floor_ratios", "c1_p99", "ratio"),
    _ratio("relay-added / floor-added, non-streamed p50, concurrency 16", 2.0, "floor_ratios", "c16_p50", "ratio"),
    _ratio("relay-added / floor-added, non-streamed p99, concurrency 16", 2.0, "floor_ratios", "c16_p99", "ratio"),
    _ratio("relay-added / floor-added, time to first streamed byte p50", 2.0, "floor_ratios", "first_byte_p50", "ratio"),
    _ratio(
        "relay-added / floor-added, time to first streamed byte p50, answer after a pause",
        2.0,
        "floor_ratios",
        "first_byte_after_think_p50",
        "ratio",
    ),
)

# The relay through the Python worker against the platform floor (bench/platform_floor/) through the same worker and
# host stand-in, in the same capacity run.
PLATFORM_TARGETS: tuple[Target, ...] = (
    _ratio("relay knee / platform floor knee, concurrent streams", 0.5, "capacity", "platform", "streams_knee_ratio", at_least=True),
    _ratio("relay knee / platform floor knee, non-streamed calls", 0.5, "capacity", "platform", "plain_knee_ratio", at_least=True),
    _ratio(
        "relay / platform floor, first chunk p99 at the relay's stream knee",
        2.0,
        "capacity",
        "platform",
        "first_chunk_p99_ratio_at_knee",
    ),
)


def lookup(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = results
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def evaluate(results: dict[str, Any], targets: tuple[Target, ...] = TARGETS) -> list[dict[str, Any]]:
    """Each target against the results; a value that was not measured (absent or None) misses."""
    checks = []
    for target in targets:
        value = lookup(results, target.path)
        measured = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = measured and (value >= target.limit if target.at_least else value <= target.limit)
        checks.append(
            {
                "target": target.name,
                "limit": target.limit,
                "unit": target.unit,
                "kind": target.kind,
                "at_least": target.at_least,
                "decides": target.decides,
                "value": value,
                "pass": ok,
            }
        )
    return checks


def deciding_misses(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The misses that make the exit status 1: ratios and counts, never an absolute figure."""
    return [check for check in checks if check["decides"] and not check["pass"]]


def exit_status(checks: list[dict[str, Any]]) -> int:
    """``python -m bench``'s exit status for a measurement that completed: 1 when a ratio or a count missed, else 0."""
    return 1 if deciding_misses(checks) else 0
