"""A quick run of ``python -m bench.exporter_cost``: every step is timed, and the relay's conversion is the cheaper one.

The figures themselves are not asserted (a short run on a busy machine says little); only that each
is there and sane, and that the relay's conversion costs less than the exporter's, which it does by
about ten times, far more than a busy machine's noise.
"""

from __future__ import annotations

import math

import pytest

from bench import exporter_cost

STEPS = {"record_us", "metrics_us", "dependency_span_us"} | {
    f"{kind}_{step}_us" for kind in ("log", "span") for step in ("exporter_conversion", "lean_conversion", "json_encoding")
}


def test_each_step_is_timed_and_the_relays_conversion_costs_less_than_the_exporters() -> None:
    costs = exporter_cost.measure(200)
    assert set(costs) == STEPS
    assert all(math.isfinite(cost) and cost > 0 for cost in costs.values()), costs
    assert costs["log_lean_conversion_us"] < costs["log_exporter_conversion_us"]
    assert costs["span_lean_conversion_us"] < costs["span_exporter_conversion_us"]


def test_the_command_prints_each_figure(capsys: pytest.CaptureFixture[str]) -> None:
    exporter_cost.main(["--items", "20"])
    out = capsys.readouterr().out
    for label in ("request record", "metrics", "dependency span", "log  the relay's conversion", "span the exporter's conversion"):
        assert label in out
