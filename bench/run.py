"""``python -m bench``: the relay path against calling the emulator directly, side by side.

A = the request straight to the Azure OpenAI emulator (bearer token from its
managed identity endpoint); B = the same request through the local host
(App Service front end + Easy Auth emulation + the relay), which calls the
same emulator. A and B alternate in small blocks (ABBA order), so drift of the
machine hits both; what the relay adds is B minus A, percentile by percentile.
A bare passthrough (bench/floor.py) takes its turn in the same rotation, and
the relay's added cost is also reported as a ratio to what the floor adds.
Then the capacity phase (bench/capacity.py): one relay process pinned to one
CPU, ramps of concurrent streams and non-streamed calls, and their knees; with
``--runtime worker`` the relay runs in the Python worker behind the Functions
host stand-in, beside the platform floor (bench/platform_floor/) run the same way.

Exit status (bench/verdict.py): 0 every ratio and count target met, 1 one missed (printed), 2 the harness
failed. Targets in absolute milliseconds or megabytes are printed beside them, informational.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench import body_parse, capacity, controls, loadgen, procs, report, telemetry_cost
from bench.capacity import FULL_CAPACITY, QUICK_CAPACITY, WORKER_CAPACITY, CapacityPlan
from bench.loadgen import Block, Side, run_block
from bench.stats import added_ms, percentile, slope, summary_ms
from bench.verdict import PLATFORM_TARGETS, deciding_misses, evaluate, exit_status
from devhost import defaults
from devhost.defaults import ROOT
from devhost.ports import free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to take; every loop is bounded by a count and by a deadline."""

    warmup: int
    c1_pairs: int
    c16_rounds: int
    c64_rounds: int
    per_worker: int
    stream_pairs: int
    gap_pairs: int
    soak_requests: int
    soak_sample_every: int
    cold_starts: int
    import_runs: int
    parse_runs: int
    phase_deadline_s: float
    controls_pairs: int
    controls_rounds: int
    capacity: CapacityPlan


FULL = Plan(
    warmup=300,
    c1_pairs=2000,
    c16_rounds=24,
    c64_rounds=12,
    per_worker=8,
    stream_pairs=500,
    gap_pairs=12,
    soak_requests=10_000,
    soak_sample_every=500,
    cold_starts=5,
    import_runs=6,
    parse_runs=9,
    phase_deadline_s=60.0,
    controls_pairs=1000,
    controls_rounds=12,
    capacity=FULL_CAPACITY,
)
QUICK = Plan(
    warmup=32,
    c1_pairs=60,
    c16_rounds=2,
    c64_rounds=1,
    per_worker=2,
    stream_pairs=20,
    gap_pairs=1,
    soak_requests=256,
    soak_sample_every=64,
    cold_starts=1,
    import_runs=1,
    parse_runs=1,
    phase_deadline_s=5.0,
    controls_pairs=30,
    controls_rounds=1,
    capacity=QUICK_CAPACITY,
)


def plan_for(quick: bool, runtime: str) -> Plan:
    """The run's plan; a full run through the worker climbs the capacity grid made for its knees (``WORKER_CAPACITY``)."""
    if quick:
        return QUICK
    return dataclasses.replace(FULL, capacity=WORKER_CAPACITY) if runtime == "worker" else FULL


class Bench:
    def __init__(self, plan: Plan, emulator: procs.Proc, relay: procs.Proc, floor: procs.Proc | None = None) -> None:
        self.plan = plan
        self.emulator = emulator
        self.relay = relay
        self.watch = {"relay": relay.pid, "emulator": emulator.pid, **({"floor": floor.pid} if floor else {})}
        self.direct = Side.make("direct", emulator.url, loadgen.CHAT_PATH_DIRECT, procs.managed_identity_token(emulator.url))
        self.via_relay = Side.make("relay", relay.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(relay.url))
        # The bare passthrough (bench/floor.py) authenticates upstream itself and reads no token.
        self.via_floor = Side.make("floor", floor.url, loadgen.CHAT_PATH_DIRECT, "unused") if floor else None
        self.errors: list[str] = []
        self.relayed = 0  # requests sent through the relay since the warm-up
        self.samples: dict[str, Any] = {}  # raw samples for the chart, not written to JSON

    @property
    def sides(self) -> list[Side]:
        return [self.direct, self.via_relay, *([self.via_floor] if self.via_floor else [])]

    def order(self, index: int) -> tuple[Side, ...]:
        """The sides in the order of round ``index``: ABBA for two; every order in turn for three, so each side is first as often."""
        orders = list(itertools.permutations(self.sides))
        return orders[index % len(orders)]

    async def _block(self, side: Side, conns: list[Any], raw: bytes, per_worker: int) -> Block:
        block = await run_block(conns, raw, per_worker, self.watch)
        self.errors += block.errors
        if side is self.via_relay:
            self.relayed += len(block.responses) + len(block.errors)
        return block

    async def warmup(self) -> None:
        for side in self.sides:
            conns = side.connections(16)
            await self._block(side, conns, side.plain, max(1, self.plan.warmup // 16))
            await self._block(side, conns, side.stream, 2)
            for conn in conns:
                conn.close()
        self.relayed = 0

    async def latency(self, concurrency: int, rounds: int, per_worker: int) -> dict[str, Any]:
        """Non-streamed completions at ``concurrency``: ``rounds`` of A and B blocks, in ABBA order."""
        conns = {side.name: side.connections(concurrency) for side in self.sides}
        latencies: dict[str, list[float]] = {side.name: [] for side in self.sides}
        wall = {side.name: 0.0 for side in self.sides}
        cpu: dict[str, dict[str, float]] = {side.name: {} for side in self.sides}
        count = {side.name: 0 for side in self.sides}
        pairs: list[float] = []
        deadline = time.monotonic() + self.plan.phase_deadline_s
        for index in range(rounds):
            got: dict[str, list[float]] = {}
            for side in self.order(index):
                block = await self._block(side, conns[side.name], side.plain, per_worker)
                got[side.name] = [r.latency for r in block.responses]
                latencies[side.name] += got[side.name]
                wall[side.name] += block.wall_s
                count[side.name] += len(block.responses)
                for name, seconds in block.cpu_s.items():
                    cpu[side.name][name] = cpu[side.name].get(name, 0.0) + seconds
            if concurrency == 1 and got["direct"] and got["relay"]:
                pairs.append(got["relay"][0] - got["direct"][0])
            if time.monotonic() > deadline and index >= 1:
                break
        for side_conns in conns.values():
            for conn in side_conns:
                conn.close()
        self.samples[f"c{concurrency}"] = latencies
        direct, relayed = summary_ms(latencies["direct"]), summary_ms(latencies["relay"])
        out: dict[str, Any] = {
            "concurrency": concurrency,
            "direct": direct,
            "relay": relayed,
            "added": added_ms(direct, relayed),
            "throughput_rps": {name: round(count[name] / wall[name], 1) if wall[name] else 0.0 for name in wall},
            "cpu_ms_per_request": {
                side: {proc: round(seconds * 1000 / max(1, count[side]), 4) for proc, seconds in cpu[side].items()} for side in cpu
            },
        }
        if pairs:
            out["paired_added"] = summary_ms(pairs)
        if "floor" in latencies:
            out["floor"] = summary_ms(latencies["floor"])
            out["floor_added"] = added_ms(direct, out["floor"])
        return out

    async def streaming(self, pairs: int, thinking: bool = False) -> dict[str, Any]:
        """Streamed completions at concurrency 1: time to the first byte and to the first content chunk.

        The answer comes in one burst, or with ``thinking`` after a pause of ``loadgen.THINK_S`` before its first token.
        """
        conns = {side.name: side.connections(1) for side in self.sides}
        first_byte: dict[str, list[float]] = {side.name: [] for side in self.sides}
        first_content: dict[str, list[float]] = {side.name: [] for side in self.sides}
        total: dict[str, list[float]] = {side.name: [] for side in self.sides}
        deadline = time.monotonic() + self.plan.phase_deadline_s
        for index in range(pairs):
            for side in self.order(index):
                block = await self._block(side, conns[side.name], side.thinking if thinking else side.stream, 1)
                for response in block.responses:
                    first_byte[side.name].append(response.t_first_byte - response.t_start)
                    first_content[side.name].append(response.content_times()[0] - response.t_start)
                    total[side.name].append(response.latency)
            if time.monotonic() > deadline and index >= 1:
                break
        for side_conns in conns.values():
            side_conns[0].close()
        if not thinking:
            self.samples["stream_first_content"] = first_content
        out: dict[str, Any] = {"think_ms": loadgen.THINK_S * 1000} if thinking else {}
        for label, values in (("first_byte", first_byte), ("first_content", first_content), ("complete", total)):
            direct, relayed = summary_ms(values["direct"]), summary_ms(values["relay"])
            out[label] = {"direct": direct, "relay": relayed}
            out[f"added_{label}"] = added_ms(direct, relayed)
            if "floor" in values:
                out[label]["floor"] = summary_ms(values["floor"])
                out[f"floor_added_{label}"] = added_ms(direct, out[label]["floor"])
        return out

    async def chunk_gaps(self, pairs: int) -> dict[str, Any]:
        """Paced streams (the emulator waits between content chunks): are the gaps the same through the relay?"""
        conns = {side.name: side.connections(1) for side in (self.direct, self.via_relay)}
        gaps: dict[str, list[float]] = {"direct": [], "relay": []}
        chunks: dict[str, list[int]] = {"direct": [], "relay": []}
        paired: list[float] = []
        deadline = time.monotonic() + self.plan.phase_deadline_s
        for index in range(pairs):
            order = (self.direct, self.via_relay) if index % 2 == 0 else (self.via_relay, self.direct)
            got: dict[str, list[float]] = {}
            for side in order:
                block = await self._block(side, conns[side.name], side.gaps, 1)
                for response in block.responses:
                    times = response.content_times()
                    chunks[side.name].append(len(times))
                    got[side.name] = [b - a for a, b in itertools.pairwise(times)]
                    gaps[side.name] += got[side.name]
            if "direct" in got and "relay" in got:
                paired += [abs(b - a) for a, b in zip(got["direct"], got["relay"], strict=False)]
            if time.monotonic() > deadline and index >= 1:
                break
        for side_conns in conns.values():
            side_conns[0].close()
        self.samples["gaps"] = gaps
        direct, relayed = summary_ms(gaps["direct"]), summary_ms(gaps["relay"])
        half = loadgen.GAP_DELAY_MS / 2000
        distortion = max((abs(relayed.get(p, 0.0) - direct.get(p, 0.0)) for p in ("p50", "p95")), default=0.0)
        return {
            "chunk_delay_ms": loadgen.GAP_DELAY_MS,
            "words": loadgen.GAP_WORDS,
            "direct": direct,
            "relay": relayed,
            "added": added_ms(direct, relayed),
            "paired_abs_diff": summary_ms(paired),
            "distortion_ms": round(distortion, 4),
            "content_chunks_per_stream": {name: sorted(set(values)) for name, values in chunks.items()},
            "direct_coalesced": sum(1 for gap in gaps["direct"] if gap < half),
            "relay_coalesced": sum(1 for gap in gaps["relay"] if gap < half),
        }

    async def soak(self, requests: int, sample_every: int, concurrency: int = 16) -> dict[str, Any]:
        """Relay-only load (every tenth request streamed), sampling the relay's RSS and CPU as it goes."""
        conns = self.via_relay.connections(concurrency)
        side = self.via_relay

        def raw(index: int) -> bytes:
            return side.stream if index % 10 == 9 else side.plain

        samples: list[dict[str, float]] = [{"requests": 0, **procs.memory_mb(self.relay.pid)}]
        done, wall, cpu = 0, 0.0, 0.0
        deadline = time.monotonic() + 3 * self.plan.phase_deadline_s
        per_worker = max(1, sample_every // concurrency)
        while done < requests and time.monotonic() < deadline:
            block = await run_block(conns, raw, per_worker, self.watch)
            self.errors += block.errors
            count = len(block.responses) + len(block.errors)
            done += count
            self.relayed += count
            wall += block.wall_s
            cpu += block.cpu_s["relay"]
            samples.append({"requests": done, **procs.memory_mb(self.relay.pid)})
        for conn in conns:
            conn.close()
        self.samples["rss"] = samples
        second = [s for s in samples if s["requests"] >= done / 2]
        growth = statistics.mean(s["rss_mb"] for s in second[-3:]) - statistics.mean(s["rss_mb"] for s in second[:3]) if second else 0.0
        per_1000 = slope([s["requests"] / 1000 for s in second], [s["rss_mb"] for s in second])
        return {
            "requests": done,
            "concurrency": concurrency,
            "streamed_share": 0.1,
            "throughput_rps": round(done / wall, 1) if wall else 0.0,
            "relay_cpu_ms_per_request": round(cpu * 1000 / max(1, done), 4),
            "rss_before_mb": samples[0]["rss_mb"],
            "rss_after_mb": samples[-1]["rss_mb"],
            "peak_rss_mb": samples[-1]["peak_rss_mb"],
            "second_half_growth_mb": round(growth, 2),
            "second_half_slope_mb_per_1000": round(per_1000, 3),
            "samples": samples,
        }

    def stats(self) -> dict[str, int]:
        value = procs.get_json(f"{self.emulator.url}/_emulator/stats")
        assert isinstance(value, dict)
        return {k: int(v) for k, v in value.items()}


def cold_starts(emulator: procs.Proc, work: Path, runs: int) -> dict[str, Any]:
    """Fresh ``python -m devhost`` processes: spawn to listening, and spawn to the first relayed completion."""
    listening, first = [], []
    body = loadgen.chat_body()
    for _ in range(runs):
        with procs.relay_host(emulator.url, work) as proc:
            # relay_host returns once /api/healthz answered; then the dev token and the first completion.
            token = procs.dev_token(proc.url)
            status, answer = procs.post(f"{proc.url}{loadgen.CHAT_PATH_RELAY}", body, {"Authorization": f"Bearer {token}"}, timeout=30)
            done = time.monotonic()
            if status != 200 or b'"choices"' not in answer:
                raise RuntimeError(f"cold start: first completion failed with {status}: {answer[:200]!r}")
            listening.append((proc.ready - proc.started) * 1000)
            first.append((done - proc.started) * 1000)
    return {
        "runs": runs,
        "listening_ms": _ms_stats(listening),
        "first_completion_ms": _ms_stats(first),
    }


_IMPORT_SNIPPET = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"


def import_time(emulator_url: str, runs: int) -> dict[str, Any]:
    """``import function_app`` in a fresh interpreter (bytecode already compiled by a discarded first run)."""
    env = procs.relay_env(emulator_url, free_port())
    times = []
    for index in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_SNIPPET], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        if index:
            times.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
    detail = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import function_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {"runs": runs, "function_app_ms": _ms_stats(times), "heaviest": _heaviest_imports(detail.stderr)}


def _heaviest_imports(importtime: str, top: int = 12) -> list[dict[str, Any]]:
    """The heaviest modules one or two levels below ``function_app`` (from ``-X importtime``)."""
    rows: list[dict[str, Any]] = []
    for line in importtime.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append({"module": name.strip(), "depth": depth, "self_ms": int(parts[0]) / 1000, "cumulative_ms": int(parts[1]) / 1000})
    # -X importtime prints children before their parent, at one more level of indentation.
    return sorted((row for row in rows if 1 <= row["depth"] <= 2), key=lambda row: -row["cumulative_ms"])[:top]


def _ms_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "p90": round(percentile(values, 90), 1),
    }


def floor_ratios(latency: dict[str, Any], streaming: dict[str, Any], after_think: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Relay-added over floor-added (each minus the direct call), for the measurements the targets name.

    None when the floor added nothing measurable (zero or less): the ratio is then undefined, not infinite.
    """
    pairs = {
        "c1_p50": (latency["c1"]["added"], latency["c1"].get("floor_added", {}), "p50"),
        "c1_p99": (latency["c1"]["added"], latency["c1"].get("floor_added", {}), "p99"),
        "c16_p50": (latency["c16"]["added"], latency["c16"].get("floor_added", {}), "p50"),
        "c16_p99": (latency["c16"]["added"], latency["c16"].get("floor_added", {}), "p99"),
        "first_byte_p50": (streaming["added_first_byte"], streaming.get("floor_added_first_byte", {}), "p50"),
        "first_byte_after_think_p50": (after_think["added_first_byte"], after_think.get("floor_added_first_byte", {}), "p50"),
        "first_content_after_think_p50": (after_think["added_first_content"], after_think.get("floor_added_first_content", {}), "p50"),
    }
    out: dict[str, dict[str, float | None]] = {}
    for name, (relay, floor, pct) in pairs.items():
        relay_ms, floor_ms = relay.get(pct), floor.get(pct)
        ratio = round(relay_ms / floor_ms, 2) if relay_ms is not None and floor_ms is not None and floor_ms > 0 else None
        out[name] = {"relay_added_ms": relay_ms, "floor_added_ms": floor_ms, "ratio": ratio}
    return out


def controls_ratios(controls_result: dict[str, Any]) -> dict[str, float | None]:
    """The relay's latency p50 with the block list and budgets on over the same with both off, per concurrency."""
    out: dict[str, float | None] = {}
    for key in ("c1", "c16"):
        on, off = controls_result[key]["relay"].get("p50"), controls_result[key]["direct"].get("p50")
        out[f"{key}_p50"] = round(on / off, 3) if on is not None and off else None
    return out


async def measure(plan: Plan, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    results: dict[str, Any] = {}
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    with procs.emulator(work) as emulator:
        with procs.relay_host(emulator.url, work) as relay, procs.floor(emulator.url, work) as floor:
            bench = Bench(plan, emulator, relay, floor)
            results["startup"] = {"relay_listening_ms": round((relay.ready - relay.started) * 1000, 1)}
            await bench.warmup()
            phase("start_and_warmup")
            before = bench.stats()
            lat: dict[str, Any] = {}
            lat["c1"] = await bench.latency(1, plan.c1_pairs, 1)
            lat["c16"] = await bench.latency(16, plan.c16_rounds, plan.per_worker)
            lat["c64"] = await bench.latency(64, plan.c64_rounds, max(2, plan.per_worker // 2))
            phase("latency")
            results["latency"] = lat
            results["streaming"] = await bench.streaming(plan.stream_pairs)
            results["streaming_after_think"] = await bench.streaming(plan.stream_pairs, thinking=True)
            results["floor_ratios"] = floor_ratios(lat, results["streaming"], results["streaming_after_think"])
            results["chunk_gaps"] = await bench.chunk_gaps(plan.gap_pairs)
            phase("streaming")
            soak = await bench.soak(plan.soak_requests, plan.soak_sample_every)
            phase("soak")
            after = bench.stats()
            tokens = after["token_requests"] - before["token_requests"]
            results["identity"] = {
                "relayed_requests": bench.relayed,
                "token_requests": tokens,
                "token_requests_per_1000": round(tokens * 1000 / max(1, bench.relayed), 3),
                "token_requests_total_since_start": after["token_requests"],
            }
            results["throughput"] = {
                f"c{c}": {**lat[f"c{c}"]["throughput_rps"], "ratio": _ratio(lat[f"c{c}"]["throughput_rps"])} for c in (1, 16, 64)
            } | {"soak_c16_relay_only_rps": soak["throughput_rps"]}
            results["cpu"] = {
                f"c{c}": {
                    "relay_ms_per_relayed_request": lat[f"c{c}"]["cpu_ms_per_request"]["relay"].get("relay"),
                    "emulator_ms_per_direct_request": lat[f"c{c}"]["cpu_ms_per_request"]["direct"].get("emulator"),
                    "emulator_ms_per_relayed_request": lat[f"c{c}"]["cpu_ms_per_request"]["relay"].get("emulator"),
                    "loadgen_ms_per_request": lat[f"c{c}"]["cpu_ms_per_request"]["relay"].get("loadgen"),
                    "floor_ms_per_floor_request": lat[f"c{c}"]["cpu_ms_per_request"].get("floor", {}).get("floor"),
                }
                for c in (1, 16, 64)
            } | {"soak_relay_ms_per_request": soak["relay_cpu_ms_per_request"]}
            samples = soak.pop("samples")
            results["memory"] = {**soak, "rss_samples": [[s["requests"], s["rss_mb"]] for s in samples]}
            results["errors"] = {"total": len(bench.errors), "first": bench.errors[:5]}
            chart_samples = bench.samples
            # After the identity count: the relay with both controls on fetches its own tokens when it starts.
            results["controls"] = await controls.measure(Bench, plan, emulator, relay, work)
            results["controls_ratios"] = controls_ratios(results["controls"])
            phase("controls")
            results["telemetry"] = await telemetry_cost.measure(Bench, plan, emulator, relay, work)
            phase("telemetry")
        phase("stop_relay")
        results["cold_start"] = cold_starts(emulator, work, plan.cold_starts)
        phase("cold_start")
        results["import"] = import_time(emulator.url, plan.import_runs)
        phase("import")
        results["body_parse"] = body_parse.measure(plan.parse_runs)
        phase("body_parse")
    phase("stop_emulator")
    results["phase_seconds"] = phases
    return results, chart_samples


def _ratio(rps: dict[str, float]) -> float | None:
    return round(rps["relay"] / rps["direct"], 3) if rps.get("direct") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds of each measurement (smoke run; figures are not meaningful)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for latest.json and latest.png (default: bench/results)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--capacity-only", action="store_true", help="only the capacity ramp (bench/capacity.py); writes capacity.json and capacity.png"
    )
    parser.add_argument(
        "--runtime",
        choices=defaults.RUNTIMES,
        default=defaults.RUNTIME,
        help="where the capacity phase runs the relay: the local host's own process (default) or the Python worker "
        "behind the Functions host stand-in, beside the platform floor (bench/platform_floor/) run the same way "
        "(with --capacity-only: writes capacity-worker.json)",
    )
    parser.add_argument(
        "--host-cpu",
        choices=capacity.HOST_CPUS,
        default="shared",
        help="with --runtime worker: the Functions host stand-ins on their workers' CPU (default, as in Azure) or on the "
        "other CPU, the workers alone (indicative only; writes capacity-worker-alone.json)",
    )
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="the capacity phase's relay exports its records, metrics and dependency spans to the emulator's ingestion "
        "stand-in, as deployed with Application Insights (writes capacity[-worker]-telemetry.json with --capacity-only)",
    )
    args = parser.parse_args(argv)
    if args.host_cpu == "other" and not (args.capacity_only and args.runtime == "worker"):
        parser.error("--host-cpu other needs --capacity-only --runtime worker")
    if args.telemetry and not args.capacity_only:
        parser.error("--telemetry needs --capacity-only (the full run measures telemetry's cost in its own phase)")
    plan = plan_for(args.quick, args.runtime)
    mode = ("quick" if args.quick else "full") + (" capacity-only" if args.capacity_only else "")
    name = "latest"
    if args.capacity_only:
        name = "capacity" + ("-worker" if args.runtime == "worker" else "") + ("-alone" if args.host_cpu == "other" else "")
        name += "-telemetry" if args.telemetry else ""
    started = time.monotonic()
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        print(f"bench: warning: load average {load_before[0]:.1f} before the run; other work will distort the figures", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
            results, samples = ({}, {}) if args.capacity_only else asyncio.run(measure(plan, Path(tmp)))
            # Its own processes (pinned) and its own event loop: uvloop, so the load generator costs less of its CPU.
            results["capacity"] = uvloop.run(capacity.measure(plan.capacity, Path(tmp), args.runtime, args.host_cpu, args.telemetry))
    except Exception:  # noqa: BLE001 - any failure of the harness is exit 2, with its traceback
        traceback.print_exc()
        print("bench: the harness failed (exit 2)", file=sys.stderr)
        return 2
    checks = [] if args.capacity_only else evaluate(results)
    if "platform" in results["capacity"]:
        checks += evaluate(results, PLATFORM_TARGETS)
    document = {
        "schema": 1,
        "mode": mode,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": procs.git_commit(),
        "machine": procs.machine(),
        # Other work on the machine shows here: the A/B interleaving cancels slow drift, not contention.
        "loadavg_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "duration_s": round(time.monotonic() - started, 1),
        "method": {
            "direct": "POST {emulator}/openai/v1/chat/completions, bearer token from the emulator's managed identity endpoint",
            "relay": "POST {host}/api/v1/chat/completions with a dev token: App Service front end + Easy Auth emulation + relay",
            "floor": "POST {floor}/ with the same body: bench/floor.py, a bare ASGI app on the same uvicorn, one aiohttp session",
            "interleaving": "direct, relay and floor blocks in rotating order (each first as often); added = side percentile minus direct",
            "capacity": "bench/capacity.py: one relay process pinned to one CPU, ramps of concurrent streams and non-streamed calls",
            "telemetry": "bench/telemetry_cost.py: a relay exporting to the ingestion stand-in against one with telemetry off, paired",
            "platform": "with --runtime worker: bench/platform_floor/ through the same worker library and host stand-in, pinned alike",
            "plan": dataclasses.asdict(plan),
        },
        "results": results,
        "targets": checks,
        # Decided by the ratios and counts only (bench/verdict.py); "targets" keeps every check.
        "passed": not deciding_misses(checks),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(report.table(document))
    if not args.no_chart:
        print(f"chart: {report.chart(samples, document, args.out / f'{name}.png')}")
    print(f"results: {args.out / f'{name}.json'}")
    for check in checks:
        if not check["pass"]:
            label = "MISSED" if check["decides"] else "over (informational, absolute)"
            print(f"{label}: {check['target']}: {report.check_text(check)}", file=sys.stderr)
    return exit_status(checks)
