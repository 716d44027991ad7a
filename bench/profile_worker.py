"""``python -m bench.profile_worker``: where the worker's time goes per stream chunk or per call, relay against platform floor.

Starts the rig as ``python -m bench --capacity-only --runtime worker`` does (the emulator, the
pacer and the load generator on one CPU; the local host's Functions host stand-in and its Python
worker on the other), holds ``--concurrency`` streams or non-streamed calls in flight for one
capacity step (``bench.capacity.load_step``), and samples the worker process with
``py-spy record --format raw`` meanwhile. ``--target platform`` does the same with the platform
floor (``bench/platform_floor/``) behind the same host stand-in, for the comparison. It prints
the worker's and the host's CPU per chunk (or per call) over the step's window, the samples
grouped by component in milliseconds of worker CPU per chunk, and the heaviest frames.

``--gc`` also reports the worker's garbage collections over the window (``bench/gc_watch/``):
how many of each generation, their pauses, and the objects they found unreachable, which
reference counting alone did not free (a reference cycle per request shows here).

py-spy is in requirements-bench.txt; ``--py-spy`` points at another copy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import capacity, loadgen, procs
from bench.capacity import FULL_CAPACITY, CapacityPlan
from bench.loadgen import Side
from bench.profile import EXPORTER_THREADS, aggregate, count_by, default_py_spy, in_exporter_thread, match_component
from devhost.defaults import ROOT
from shared.config import DEFAULT_UPSTREAM_CONNECTIONS

# Path prefixes (as bench.profile shortens them) of the code that is not the standard library, and the component each is.
COMPONENTS = (
    ("shared/", None),  # the relay: one component per module, e.g. "relay: forwarded_stream.py"
    ("function_app.py", "the app's function_app.py (the relay's routes, or the platform floor)"),
    ("bench/platform_floor/", "the app's function_app.py (the relay's routes, or the platform floor)"),
    ("azure_functions_runtime/", "worker library (azure-functions-runtime)"),
    ("azurefunctions/", "HTTP streaming extension (azurefunctions-extensions-http-fastapi)"),
    ("azure/functions/", "azure.functions"),
    ("devhost/functions_host/", "worker shell (gRPC)"),
    ("grpc/", "gRPC"),
    ("google/protobuf/", "gRPC"),
    ("fastapi/", "FastAPI / Starlette"),
    ("starlette/", "FastAPI / Starlette"),
    ("uvicorn/", "uvicorn (the worker's HTTP server)"),
    ("h11/", "uvicorn (the worker's HTTP server)"),
    ("httptools/", "uvicorn (the worker's HTTP server)"),
    ("aiohttp/", "aiohttp client"),
    ("multidict/", "aiohttp client"),
    ("yarl/", "aiohttp client"),
)
EVENT_LOOP = "event loop and socket I/O (below every library frame)"
# py-spy's idle detection misses some waits (a loaded machine, a thread parked in C): samples whose innermost frame is
# one of these are waiting, not working, and are left out of the CPU attribution.
WAITING = "waiting (epoll, parked threads): not CPU"
_WAITING_LEAVES = ("EpollSelector.select (selectors.py:", "Thread.run (threading.py:", "Condition.wait (threading.py:")


def component(frames: list[str]) -> str:
    """The innermost non-standard-library frame's component (standard-library frames count to their caller)."""
    if frames and frames[-1].startswith(_WAITING_LEAVES):
        return WAITING
    if in_exporter_thread(frames):
        return EXPORTER_THREADS
    for frame in reversed(frames):
        name = match_component(frame.rpartition(" (")[2], COMPONENTS)
        if name is not None:
            return name
    return EVENT_LOOP


def by_component(raw: str) -> tuple[int, list[tuple[str, int]]]:
    """(samples, samples per component, heaviest first) from py-spy's collapsed stacks (busy threads only)."""
    return count_by(raw, component)


GC_WATCH = ROOT / "bench" / "gc_watch"


def gc_watch_env(directory: Path) -> dict[str, str]:
    """What starts ``bench/gc_watch`` in every Python process of a local host, writing to ``directory``."""
    path = os.pathsep.join(part for part in (str(GC_WATCH), os.environ.get("PYTHONPATH", "")) if part)
    return {"PYTHONPATH": path, "BENCH_GC_WATCH_DIR": str(directory)}


def read_gc(directory: Path, pid: int) -> dict[str, dict[str, float]]:
    """The running totals ``bench/gc_watch`` last wrote for process ``pid`` (empty before its first write)."""
    try:
        return dict(json.loads((directory / f"gc-{pid}.json").read_text(encoding="utf-8"))["generations"])
    except FileNotFoundError:
        return {}


def gc_between(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Collections, pauses and unreachable objects per generation between two readings (the longest pause: over the run)."""
    window: dict[str, dict[str, float]] = {}
    for generation, totals in after.items():
        earlier = before.get(generation, {})
        window[generation] = {name: value - earlier.get(name, 0) for name, value in totals.items() if name != "longest_ms"}
        window[generation]["longest_ms"] = totals["longest_ms"]
    return window


def step_plan(window_s: float) -> CapacityPlan:
    """The capacity phase's streams and calls (cadence, length, upstream delay), with a window of ``window_s``."""
    return replace(FULL_CAPACITY, window_s=window_s, settle_s=0.0)


async def _profiled_step(
    side: Side, raw: bytes, kind: str, concurrency: int, plan: CapacityPlan, watch: dict[str, int], spy: list[str], gc_dir: Path | None
) -> tuple[capacity.Load, str, dict[str, dict[str, float]] | None]:
    """One capacity step with py-spy sampling the worker from the window's start to its end (and, with ``gc_dir``, its collections)."""
    step = asyncio.ensure_future(capacity.load_step(side, raw, concurrency, plan.ramp_s(kind), plan, watch, "worker"))
    await asyncio.sleep(plan.ramp_s(kind))
    gc_before = read_gc(gc_dir, watch["worker"]) if gc_dir is not None else {}
    with tempfile.NamedTemporaryFile(prefix="stacks-", suffix=".txt", delete=False) as out:
        path = Path(out.name)
    recorder = subprocess.Popen([*spy, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    load = await step
    gc_window = gc_between(gc_before, read_gc(gc_dir, watch["worker"])) if gc_dir is not None else None
    recorder.send_signal(signal.SIGINT)  # py-spy writes its output and exits
    _, err = recorder.communicate(timeout=60)
    raw_stacks = path.read_text(encoding="utf-8") if path.exists() else ""
    path.unlink(missing_ok=True)
    if not raw_stacks:
        raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[:500]}")
    return load, raw_stacks, gc_window


async def profile(
    target: str,
    kind: str,
    concurrency: int,
    window_s: float,
    spy_options: list[str],
    work: Path,
    telemetry: bool = False,
    watch_gc: bool = False,
) -> dict[str, Any]:
    plan = step_plan(window_s)
    layout = capacity.cpu_layout(os.sched_getaffinity(0))
    capacity.raise_fd_limit(concurrency)
    pool = max(DEFAULT_UPSTREAM_CONNECTIONS, 2 * concurrency)
    with contextlib.ExitStack() as stack:
        stack.enter_context(capacity.pinned(layout.rig))
        emulator = stack.enter_context(procs.emulator(work, cpus=layout.rig))
        pacer = stack.enter_context(procs.pacer(emulator.url, work, cpus=layout.rig))
        env = {"RELAY_UPSTREAM_CONNECTIONS": str(pool), "AZURE_OPENAI_ENDPOINT": pacer.url, "DEVHOST_RUNTIME": "worker"}
        if telemetry:
            env |= procs.telemetry_env(emulator, work)
        gc_dir = work / "gc" if watch_gc else None
        if gc_dir is not None:
            gc_dir.mkdir()
            env |= gc_watch_env(gc_dir)
        start = procs.platform_floor if target == "platform" else procs.relay_host
        host = stack.enter_context(start(emulator.url, work, extra_env=env, cpus=layout.relay))
        side = Side.make(target, host.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(host.url))
        watch = {"worker": procs.only_child(host.pid), "host": host.pid, "pacer": pacer.pid}
        prompt = plan.stream_prompt() if kind == "streams" else plan.plain_prompt()
        raw = side.request(loadgen.chat_body(prompt, stream=kind == "streams"))
        # Warm-up: the first requests import and connect.
        await capacity.load_step(side, raw, min(concurrency, 8), 0.2, replace(plan, window_s=1.0), watch, "worker")
        # py-spy reads the stacks without stopping the process, except for C frames, which need it stopped (slower).
        blocking = [] if "--native" in spy_options else ["--nonblocking"]
        spy = [*spy_options[:1], "record", "--pid", str(watch["worker"]), "--format", "raw", *blocking, *spy_options[1:]]
        load, stacks, gc_window = await _profiled_step(side, raw, kind, concurrency, plan, watch, spy, gc_dir)
    figures = capacity.side_figures(load, kind, plan, ("worker", "host"))
    unit = "chunk" if kind == "streams" else "call"
    return {"figures": figures, "unit": unit, "stacks": stacks, "gc": gc_window}


def gc_report(window: dict[str, dict[str, float]], units: int, unit: str) -> list[str]:
    """The worker's collections over the window, a line per generation, and the unreachable objects they found."""
    lines = ["\nthe worker's garbage collections in the window (bench/gc_watch; longest: over the whole run):"]
    for generation, figures in sorted(window.items()):
        lines.append(
            f"  generation {generation}: {figures['collections']:.0f} collections, {figures['pause_ms']:.0f} ms in all,"
            f" longest {figures['longest_ms']:.1f} ms, {figures['unreachable']:.0f} unreachable objects found"
        )
    unreachable = sum(figures["unreachable"] for figures in window.values())
    lines.append(f"  unreachable objects per {unit}: {unreachable / max(1, units):.3f} (reference counting frees the rest at once)")
    return lines


def report(target: str, kind: str, concurrency: int, result: dict[str, Any], top: int) -> str:
    figures, unit = result["figures"], result["unit"]
    per = figures[f"cpu_ms_per_{unit}"]
    delay = figures["chunk_delay_ms" if kind == "streams" else "latency_ms"]
    lines = [
        f"{target} through the worker, {concurrency} {kind} in flight: {figures[f'{unit}s_in_window']} {unit}s in the window,"
        f" errors {figures['errors']}; CPU per {unit}: worker {per.get('worker')} ms, host stand-in {per.get('host')} ms;"
        f" {'gap minus cadence' if kind == 'streams' else 'latency'} p50/p99 {delay.get('p50')}/{delay.get('p99')} ms",
    ]
    total, grouped = by_component(result["stacks"])
    working = total - dict(grouped).get(WAITING, 0)
    worker_ms = per.get("worker") or 0.0
    lines.append(
        f"\nworker samples by component ({total} samples, {working} working; share of those, and that share of the worker's"
        f" CPU per {unit}):"
    )
    for name, count in grouped:
        if name == WAITING:
            lines.append(f"  ({count} samples {name})")
            continue
        share = count / max(1, working)
        lines.append(f"  {100 * share:5.1f}%  {share * worker_ms:7.4f} ms  {name}")
    if result.get("gc") is not None:
        lines += gc_report(result["gc"], figures[f"{unit}s_in_window"], unit)
    _, own, inclusive = aggregate(result["stacks"], top)
    lines.append("\nown time (leaf frame):")
    lines += [f"  {100 * count / max(1, total):5.1f}%  {frame}" for frame, count in own]
    lines.append("\ninclusive time:")
    lines += [f"  {100 * count / max(1, total):5.1f}%  {frame}" for frame, count in inclusive]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=("relay", "platform"), default="relay", help="the app in the worker")
    parser.add_argument("--kind", choices=("streams", "plain"), default="streams")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight (the knee: bench/results/capacity-worker.json)")
    parser.add_argument("--seconds", type=float, default=10.0, help="the sampled window, after a ramp of one request's duration")
    parser.add_argument("--py-spy", default=default_py_spy(), help="the py-spy executable (default: beside this Python, else on PATH)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="every sample of a busy thread (py-spy's default) instead of only those holding the GIL (--gil, the default "
        "here: on a loaded machine py-spy takes a runnable thread waiting for a CPU for a busy one)",
    )
    parser.add_argument(
        "--native", action="store_true", help="py-spy --native: C frames too (gRPC's core, uvloop); stops the worker at each sample"
    )
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="the app exports to the emulator's ingestion stand-in, as deployed with Application Insights",
    )
    parser.add_argument("--gc", action="store_true", help="also report the worker's garbage collections over the window (bench/gc_watch)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="also keep py-spy's raw collapsed stacks here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-profile-worker-") as tmp:
        spy_options = [args.py_spy, "--rate", str(args.rate), *([] if args.wall else ["--gil"]), *(["--native"] if args.native else [])]
        run = profile(args.target, args.kind, args.concurrency, args.seconds, spy_options, Path(tmp), args.telemetry, args.gc)
        result = asyncio.run(run)
    if args.out:
        args.out.write_text(result["stacks"], encoding="utf-8")
    print(report(args.target, args.kind, args.concurrency, result, args.top))
    print(f"\n({time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.1f}: figures under load are indicative only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
