"""The bench's verdict: ratios and counts decide the exit status; absolute milliseconds and megabytes only inform."""

from __future__ import annotations

import copy
from typing import Any

from bench.verdict import PLATFORM_TARGETS, TARGETS, evaluate, exit_status


def _results_meeting_every_target() -> dict[str, Any]:
    """Synthetic measurements, each at its target's limit (met: "at most" and "at least" include the limit)."""
    results: dict[str, Any] = {}
    for target in (*TARGETS, *PLATFORM_TARGETS):
        node = results
        for key in target.path[:-1]:
            node = node.setdefault(key, {})
        node[target.path[-1]] = target.limit
    return results


def _with(results: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(results)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _exit(results: dict[str, Any]) -> int:
    return exit_status(evaluate(results) + evaluate(results, PLATFORM_TARGETS))


def test_every_target_met_exits_zero() -> None:
    checks = evaluate(_results_meeting_every_target())
    assert all(check["pass"] for check in checks)
    assert _exit(_results_meeting_every_target()) == 0


def test_a_machine_four_times_slower_misses_absolute_targets_and_still_passes() -> None:
    results = _results_meeting_every_target()
    slow = _with(results, 4.0, "latency", "c1", "added", "p50")  # limit 1 ms
    slow = _with(slow, 6000.0, "cold_start", "first_completion_ms", "median")  # limit 1,500 ms
    slow = _with(slow, 2400.0, "import", "function_app_ms", "median")  # limit 600 ms
    checks = evaluate(slow)
    missed = {check["target"] for check in checks if not check["pass"]}
    assert missed == {
        "added p50, non-streamed, concurrency 1",
        "cold start to first relayed completion (median)",
        "import function_app (median)",
    }
    assert all(check["kind"] == "absolute" and not check["decides"] for check in checks if not check["pass"])
    assert _exit(slow) == 0


def test_a_ratio_to_the_floor_over_its_limit_fails_the_verdict() -> None:
    results = _with(_results_meeting_every_target(), 2.5, "floor_ratios", "c16_p50", "ratio")  # limit 2x
    assert _exit(results) == 1


def test_a_ratio_of_controls_on_to_off_over_its_limit_fails_the_verdict() -> None:
    results = _with(_results_meeting_every_target(), 1.4, "controls_ratios", "c1_p50")  # limit 1.3x
    assert _exit(results) == 1


def test_a_relay_knee_under_half_the_platform_floors_fails_the_verdict() -> None:
    results = _with(_results_meeting_every_target(), 0.4, "capacity", "platform", "plain_knee_ratio")  # at least 0.5
    assert _exit(results) == 1
    assert _exit(_with(results, 0.8, "capacity", "platform", "plain_knee_ratio")) == 0


def test_a_failed_request_fails_the_verdict_on_any_machine() -> None:
    assert _exit(_with(_results_meeting_every_target(), 1, "errors", "total")) == 1


def test_a_ratio_that_was_not_measured_misses() -> None:
    # The floor added nothing measurable: the ratio is undefined (None), which is not a pass.
    results = _with(_results_meeting_every_target(), None, "floor_ratios", "c1_p50", "ratio")
    assert _exit(results) == 1
