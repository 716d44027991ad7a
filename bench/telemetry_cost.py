"""The cost of telemetry: one relay exporting to Application Insights (B) against one with telemetry off (A).

Both relays run the same code against the same emulator; B's ``APPLICATIONINSIGHTS_CONNECTION_STRING``
names the emulator's ingestion stand-in (devhost/telemetry.py, as ``make run`` sets it), so B runs the
real Azure Monitor exporter: records, metrics and the dependency span, batched and sent over HTTPS
with a managed identity token. A and B alternate in ABBA blocks as in the main comparison.

Reported as ratios measured in one run, so that the machine's speed cancels out:
- CPU per request: each relay process's CPU over the phase (the exporter's threads included, whenever
  they run) divided by the requests it served; on / off. Also split by thread: the event loop's (the
  requests' own work, the emit) and the others (the exporters' batch threads and metric reader).
- added latency at concurrency 1: the ratio of each pair's latencies (on / off), its median and spread.
- cold start with telemetry configured: spawn to the first relayed completion, on and off alternately.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.loadgen import Side
from bench.stats import percentile


def _cold_start_ms(emulator: procs.Proc, work: Path, extra_env: dict[str, str]) -> float:
    with procs.relay_host(emulator.url, work, extra_env=extra_env) as proc:
        token = procs.dev_token(proc.url)
        headers = {"Authorization": f"Bearer {token}"}
        status, answer = procs.post(f"{proc.url}{loadgen.CHAT_PATH_RELAY}", loadgen.chat_body(), headers, timeout=30)
        done = time.monotonic()
        if status != 200 or b'"choices"' not in answer:
            raise RuntimeError(f"cold start with telemetry: first completion failed with {status}: {answer[:200]!r}")
        return (done - proc.started) * 1000


def _by_thread(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU seconds between two snapshots: the main thread's (the event loop's), and all other threads' together."""
    spent = {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
    return {"event_loop": spent.pop(pid, 0.0), "other_threads": sum(spent.values())}


def _spread(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "p10": round(percentile(ordered, 10), 4) if values else None,
        "median": round(statistics.median(ordered), 4) if values else None,
        "p90": round(percentile(ordered, 90), 4) if values else None,
    }


async def measure(bench_type: Any, plan: Any, emulator: procs.Proc, relay_off: procs.Proc, work: Path) -> dict[str, Any]:
    """A = ``relay_off`` (telemetry off), B = a relay exporting to the ingestion stand-in."""
    env = procs.telemetry_env(emulator, work)
    with procs.relay_host(emulator.url, work, extra_env=env) as relay_on:
        bench = bench_type(plan, emulator, relay_on)
        # The A side is the relay with telemetry off; the names stay "direct" and "relay" for the shared code.
        bench.direct = Side.make("direct", relay_off.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(relay_off.url))
        bench.watch = {"relay": relay_on.pid, "relay_off": relay_off.pid}
        await bench.warmup()
        cpu_before = {"on": procs.cpu_seconds(relay_on.pid), "off": procs.cpu_seconds(relay_off.pid)}
        threads_before = {"on": procs.thread_cpu_seconds(relay_on.pid), "off": procs.thread_cpu_seconds(relay_off.pid)}
        c1 = await bench.latency(1, plan.controls_pairs, 1)
        c16 = await bench.latency(16, plan.controls_rounds, plan.per_worker)
        cpu = {"on": procs.cpu_seconds(relay_on.pid) - cpu_before["on"], "off": procs.cpu_seconds(relay_off.pid) - cpu_before["off"]}
        threads = {
            "on": _by_thread(relay_on.pid, threads_before["on"], procs.thread_cpu_seconds(relay_on.pid)),
            "off": _by_thread(relay_off.pid, threads_before["off"], procs.thread_cpu_seconds(relay_off.pid)),
        }
        pairs = bench.samples["c1"]
    served = {"on": c1["relay"]["n"] + c16["relay"]["n"], "off": c1["direct"]["n"] + c16["direct"]["n"]}
    cpu_ms = {side: cpu[side] * 1000 / max(1, served[side]) for side in cpu}
    ratios = [on / off for on, off in zip(pairs["relay"], pairs["direct"], strict=False) if off > 0]
    cold: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(plan.cold_starts):
        cold["off"].append(_cold_start_ms(emulator, work, {}))
        cold["on"].append(_cold_start_ms(emulator, work, env))
    cold_median = {side: statistics.median(values) for side, values in cold.items()}
    return {
        "method": "A = relay with telemetry off, B = relay exporting to the ingestion stand-in (real exporter); ABBA blocks",
        "c1": c1,
        "c16": c16,
        "cpu_ms_per_request": {side: round(value, 4) for side, value in cpu_ms.items()},
        "cpu_ratio": round(cpu_ms["on"] / cpu_ms["off"], 4) if cpu_ms["off"] else None,
        # Where it goes: the event loop's thread (the request's own work, the emit) against the others (the exporters').
        "cpu_ms_per_request_by_thread": {
            side: {part: round(value * 1000 / max(1, served[side]), 4) for part, value in threads[side].items()} for side in threads
        },
        "c1_latency_ratio": _spread(ratios),
        "cold_start_ms": {side: round(value, 1) for side, value in cold_median.items()},
        "cold_start_added_ms": round(cold_median["on"] - cold_median["off"], 1),
        "errors": len(bench.errors),
    }
