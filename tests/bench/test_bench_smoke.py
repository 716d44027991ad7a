"""A quick smoke run of ``python -m bench``: the harness runs end to end and writes a well-formed result.

Timing targets are not asserted here (a smoke run is far too short, and test
machines are busy): only that every measurement is present and numeric, that
no request failed, and that the exit status means "met" or "missed", never
"the harness broke".
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from bench.client import Response
from bench.stats import added_ms, percentile, summary_ms
from tests.support.servers import ROOT


def _number(document: dict, *path: str) -> float:
    value = document
    for key in path:
        assert isinstance(value, dict) and key in value, f"missing {'.'.join(path)}"
        value = value[key]
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), f"{'.'.join(path)} = {value!r}"
    return float(value)


def test_quick_run_writes_a_well_formed_result(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-chart", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    document = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert document["mode"] == "quick"
    results = document["results"]
    for key in ("c1", "c16", "c64"):
        for side in ("direct", "relay"):
            for pct in ("p50", "p95", "p99"):
                assert _number(results, "latency", key, side, pct) > 0
        assert _number(results, "latency", key, "throughput_rps", "relay") > 0
        assert _number(results, "cpu", key, "relay_ms_per_relayed_request") > 0
        _number(results, "latency", key, "added", "p99")
    assert _number(results, "streaming", "first_content", "relay", "p50") > 0
    _number(results, "streaming", "added_first_content", "p50")
    assert _number(results, "chunk_gaps", "relay", "p50") > 0
    assert results["chunk_gaps"]["content_chunks_per_stream"] == {"direct": [20], "relay": [20]}
    assert _number(results, "identity", "relayed_requests") > 0
    _number(results, "identity", "token_requests_per_1000")
    assert _number(results, "cold_start", "first_completion_ms", "median") > 0
    assert _number(results, "import", "function_app_ms", "median") > 0
    assert results["body_parse"]["1.4 M empty arrays (4 MiB)"]["outcome"] == "refused"
    assert results["body_parse"]["image data URL (4 MiB)"]["outcome"] == "parsed"
    assert _number(results, "body_parse", "image data URL (4 MiB)", "ms") > 0
    assert _number(results, "memory", "rss_after_mb") > 0
    assert results["errors"]["total"] == 0, results["errors"]
    for key in ("c1", "c16"):
        for side in ("direct", "relay"):  # controls off, on
            assert _number(results, "controls", key, side, "p50") > 0
        _number(results, "controls", key, "added", "p50")
    assert _number(results, "controls", "relayed_requests") > 0
    # The relay with both controls on read its block list once and has had no time for a second read or a sync.
    assert _number(results, "controls", "table_requests") <= 2
    assert results["controls"]["errors"] == 0
    near = results["controls"]["near_limits"]
    assert near["answered"] > 0 and near["refused_429"] > 0 and near["other_errors"] == 0
    assert _number(results, "controls", "near_limits", "table_requests_per_1000") > 0
    # Telemetry on against off: both relays served, CPU per request and the paired latency ratios are reported.
    for key in ("c1", "c16"):
        for side in ("direct", "relay"):  # telemetry off, on
            assert _number(results, "telemetry", key, side, "p50") > 0
    assert _number(results, "telemetry", "cpu_ms_per_request", "on") > 0 and _number(results, "telemetry", "cpu_ms_per_request", "off") > 0
    assert _number(results, "telemetry", "cpu_ratio") > 0
    # Split by thread; a quick run's exporter threads may not reach one clock tick, so only their presence is checked.
    for side in ("on", "off"):
        assert _number(results, "telemetry", "cpu_ms_per_request_by_thread", side, "event_loop") > 0
        _number(results, "telemetry", "cpu_ms_per_request_by_thread", side, "other_threads")
    assert _number(results, "telemetry", "c1_latency_ratio", "median") > 0 and _number(results, "telemetry", "c1_latency_ratio", "n") > 0
    assert _number(results, "telemetry", "cold_start_ms", "on") > 0
    _number(results, "telemetry", "cold_start_added_ms")
    assert results["telemetry"]["errors"] == 0
    # The bare passthrough ran beside the relay, and the ratios of what each adds are reported.
    for key in ("c1", "c16"):
        assert _number(results, "latency", key, "floor", "p50") > 0
    for key in ("c1_p50", "c1_p99", "c16_p50", "c16_p99", "first_byte_p50", "first_byte_after_think_p50", "first_content_after_think_p50"):
        _number(results, "floor_ratios", key, "relay_added_ms")
        _number(results, "floor_ratios", key, "floor_added_ms")
    assert _number(results, "streaming", "first_byte", "floor", "p50") > 0
    # The paused streams' first content waits for the emulator's think; their first byte does not.
    assert _number(results, "streaming_after_think", "first_content", "direct", "p50") >= results["streaming_after_think"]["think_ms"]
    assert _number(results, "streaming_after_think", "first_byte", "direct", "p50") < results["streaming_after_think"]["think_ms"]
    _check_capacity(results["capacity"])
    assert len(document["targets"]) >= 10
    assert all(isinstance(check["pass"], bool) for check in document["targets"])
    assert document["passed"] == (run.returncode == 0)
    # Only ratios and counts decide; an absolute figure over its limit is printed as informational.
    missed = [check["target"] for check in document["targets"] if not check["pass"] and check["decides"]]
    assert all(f"MISSED: {name}:" in run.stderr for name in missed)
    over = [check["target"] for check in document["targets"] if not check["pass"] and not check["decides"]]
    assert all(f"over (informational, absolute): {name}:" in run.stderr for name in over)
    assert {check["kind"] for check in document["targets"]} == {"ratio", "count", "absolute"}


def _check_capacity(capacity: dict, sides: tuple[str, ...] = ("relay", "floor")) -> None:
    """One step of each ramp ran through every side, with delays and CPU per unit measured and nothing failed."""
    for kind, delay, unit in (("streams", "chunk_delay_ms", "cpu_ms_per_chunk"), ("plain", "latency_ms", "cpu_ms_per_call")):
        steps = capacity[kind]["steps"]
        assert [step["concurrency"] for step in steps] == [8]
        for name in ("direct", *sides):
            side = steps[0][name]
            assert side["errors"] == 0, side["first_error"]
            assert _number(side, delay, "n") > 0
            _number(side, delay, "p99")
            # /proc counts CPU in 10 ms ticks: a lightly loaded process may show none in a 1 s window.
            assert _number(side, unit, "total") >= 0
        for name in ("relay", *(["platform"] if "platform" in sides else [])):
            assert _number(steps[0][name], unit, "total") > 0
        assert _number(steps[0]["relay"], "cpu_share", "relay") > 0
        assert _number(steps[0]["relay"], "rss_mb") > 0
        assert set(capacity[kind]["knee"]) == set(sides)
    assert _number(capacity["streams"]["steps"][0]["relay"], "first_chunk_ms", "p50") > 0
    # Every stream delivered its 15 content chunks, some of them inside the window.
    assert _number(capacity["streams"]["steps"][0]["relay"], "chunks_in_window") > 0


def _run_worker_capacity(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--capacity-only", "--runtime", "worker", "--no-chart", "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _check_platform(document: dict, run: subprocess.CompletedProcess[str]) -> dict:
    """The platform floor ramped beside the relay through the same worker and host, and the ratios the verdict reads."""
    assert run.returncode in (0, 1), run.stdout + run.stderr
    capacity = document["results"]["capacity"]
    assert capacity["runtime"] == "worker"
    _check_capacity(capacity, ("relay", "floor", "platform"))
    for kind, unit in (("streams", "chunk"), ("plain", "call")):
        step = capacity[kind]["steps"][0]
        assert set(step["relay"]["cpu_share"]) >= {"relay", "host", "platform", "platform_host"}
        # The platform floor's work is its worker's and its host's, measured while it alone was loaded.
        assert set(step["platform"][f"cpu_ms_per_{unit}"]) == {"platform", "platform_host", "total"}
        assert _number(step["relay"], "vs_platform", f"cpu_ms_per_{unit}_total") > 0
    assert {check["target"] for check in document["targets"]} >= {
        "relay knee / platform floor knee, concurrent streams",
        "relay knee / platform floor knee, non-streamed calls",
    }
    assert document["passed"] == (run.returncode == 0)
    return capacity


def test_the_capacity_ramp_through_the_real_worker_measures_the_worker_process_beside_the_platform_floor(tmp_path: Path) -> None:
    """``--runtime worker``: the relay in azure-functions-runtime's worker, its CPU and memory the worker's, the host's apart."""
    run = _run_worker_capacity(tmp_path)
    capacity = _check_platform(json.loads((tmp_path / "capacity-worker.json").read_text(encoding="utf-8")), run)
    assert capacity["host_cpu"] == "shared"
    cpus = capacity["cpus_of"]
    assert cpus["host"] == cpus["relay"] and cpus["platform_host"] == cpus["platform"] == cpus["relay"]


def test_the_worker_alone_run_moves_the_host_stand_ins_to_the_other_cpu(tmp_path: Path) -> None:
    run = _run_worker_capacity(tmp_path, "--host-cpu", "other")
    capacity = _check_platform(json.loads((tmp_path / "capacity-worker-alone.json").read_text(encoding="utf-8")), run)
    assert capacity["host_cpu"] == "other"
    assert "the workers alone" in capacity["layout"]
    cpus = capacity["cpus_of"]
    if len(os.sched_getaffinity(0)) > 1:
        # The workers have their CPU to themselves; the host stand-ins run with the emulator and the load generator.
        assert cpus["relay"] == cpus["platform"] == cpus["floor"]
        assert not set(cpus["host"]) & set(cpus["relay"]) and not set(cpus["platform_host"]) & set(cpus["platform"])
        assert cpus["host"] == cpus["pacer"]


def test_stats_and_event_timing() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert summary_ms([0.001, 0.002, 0.003])["p50"] == 2.0
    assert added_ms({"p50": 1.0, "p95": 2.0, "p99": 3.0}, {"p50": 1.5, "p95": 2.0, "p99": 5.0}) == {"p50": 0.5, "p95": 0.0, "p99": 2.0}
    content = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    response = Response(
        status=200,
        t_start=0.0,
        pieces=[
            (1.0, b'data: {"choices":[]}\n\ndata: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'),
            (2.0, content[:10]),
            (3.0, content[10:] + content),
            (4.0, b"data: [DONE]\n\n"),
        ],
    )
    # An event counts when the piece completing it arrives; empty content (the role chunk) is not content.
    assert response.content_times() == [3.0, 3.0]
