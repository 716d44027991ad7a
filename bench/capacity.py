"""Capacity of one relay worker on one CPU: concurrent streams and non-streamed calls, ramped.

A Flex Consumption instance of 2,048 MB has about one vCPU, so the local host
(one uvicorn worker: front end, Easy Auth emulation and the relay) runs pinned
to one CPU, and the emulator and the load generator to the others. The bare
passthrough (:mod:`bench.floor`) runs pinned beside the relay and is ramped
the same way, as is the emulator called directly (the rig's own baseline).

Each step holds ``concurrency`` requests in flight: every connection sends
its requests back to back, the connections starting evenly spread over one
request's duration (the ramp), so that requests run at all phases of their
life. Measurements are taken over the following ``window_s`` only, when every
connection is busy; at the window's end every request still open is cancelled
(the caller leaving), so each step is bounded in time whatever the relay does.
The window is long (10 s) because a single stall of the relay's event loop, a
full garbage collection for instance, delays every open stream at once: in a
window of 4 s a stall of 40 ms alone would be the p99.

- Streams ask the emulator for ``words`` content chunks ``chunk_delay_ms`` apart
  (``[emulate:words=N] [emulate:chunk_delay_ms=M]``). The delay added to a chunk
  is its gap from the previous content chunk minus the emulator's cadence, timed
  at the load generator's socket; what the relay adds is that, percentile by
  percentile, minus the same for the emulator called directly at the same step.
- Non-streamed calls ask the emulator to take ``plain_delay_s`` before answering
  (``[emulate:slow=S]``), as a model generating a whole answer does.
- A step is within capacity when nothing failed (a 503 from a saturated relay is
  a failure) and the p99 added delay (streams: between chunks; non-streamed: the
  whole call) is at most ``LIMIT_MS``. The knee is the largest such step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.client import HttpError, Response
from bench.loadgen import Side, ok_any
from bench.stats import summary_ms
from devhost import defaults
from shared.config import DEFAULT_BUSY_TIMEOUT_S, DEFAULT_UPSTREAM_CONNECTIONS

LIMIT_MS = 10.0
HOST_CPUS = ("shared", "other")
# The load generator waits this long after a failed connection before trying again (no hot loop on refusals).
_RETRY_PAUSE_S = 0.05
# File descriptors one process needs per concurrent request at most (the relay: caller + upstream), plus slack.
_FDS_PER_REQUEST = 2
_FD_SLACK = 512


@dataclass(frozen=True)
class CapacityPlan:
    """The ramps; every step is bounded by its ramp (one request's duration) + ``window_s``, plus a bounded settle."""

    stream_steps: tuple[int, ...]
    plain_steps: tuple[int, ...]
    chunk_delay_ms: int
    words: int
    plain_delay_s: float
    window_s: float
    settle_s: float
    # A call measured in the window is one started at least this long (beyond its expected time) before the window
    # closed; one still unanswered then counts as having taken until the close, so a stuck call is never dropped.
    censor_s: float
    # A side stops climbing after this many steps in a row outside capacity.
    misses_to_stop: int = 2

    def stream_prompt(self) -> str:
        return f"[emulate:chunk_delay_ms={self.chunk_delay_ms}] [emulate:words={self.words}] Stream for the capacity ramp"

    def plain_prompt(self) -> str:
        return f"[emulate:slow={self.plain_delay_s:g}] Answer for the capacity ramp"

    def ramp_s(self, kind: str) -> float:
        """One request's duration: a stream's chunks, or the non-streamed call's wait."""
        return self.words * self.chunk_delay_ms / 1000 if kind == "streams" else self.plain_delay_s

    @property
    def most(self) -> int:
        return max((*self.stream_steps, *self.plain_steps))


FULL_CAPACITY = CapacityPlan(
    stream_steps=(100, 250, 500, 750, 1000, 1500, 2000),
    plain_steps=(50, 100, 250, 500, 1000, 1500, 2000),
    chunk_delay_ms=50,
    words=80,
    plain_delay_s=2.0,
    window_s=10.0,
    settle_s=1.0,
    censor_s=1.0,
)
# Through the Python worker the knees sit between 100 and 500 on a 2-vCPU machine, where the grid above is 2.5x and 2x
# apart: one step's difference (a window's tail on one side) moved a knee ratio from 1.0 to 0.40, across the 0.5 target.
# Here consecutive steps are at most 1.28x apart, so one step moves a ratio by no more than that and the measurement,
# not the grid, decides a target of 0.5.
WORKER_CAPACITY = replace(
    FULL_CAPACITY,
    stream_steps=(100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000),
    plain_steps=(50, 64, 80, 100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000),
)
QUICK_CAPACITY = CapacityPlan(
    stream_steps=(8,),
    plain_steps=(8,),
    chunk_delay_ms=20,
    words=15,
    plain_delay_s=0.2,
    window_s=1.0,
    settle_s=0.1,
    censor_s=0.1,
)


# Where the processes run -------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The CPUs of the relay (and the floor), and of the rig: the emulator and the load generator."""

    relay: frozenset[int] | None
    rig: frozenset[int] | None
    note: str


def cpu_layout(usable: set[int]) -> Layout:
    """The first usable CPU for the process under test, the others for the rig; nothing pinned with one CPU."""
    cpus = sorted(usable)
    if len(cpus) < 2:
        return Layout(None, None, "one usable CPU: nothing pinned; the relay shares it with the emulator and the load generator")
    rig = ", ".join(str(cpu) for cpu in cpus[1:])
    return Layout(
        frozenset(cpus[:1]),
        frozenset(cpus[1:]),
        f"relay and floor pinned to CPU {cpus[0]}; emulator, pacer and load generator to CPU {rig}",
    )


@contextlib.contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the calling thread (the load generator's event loop) on ``cpus`` for the duration."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def raise_fd_limit(concurrency: int) -> tuple[int, int]:
    """Raise the soft open-file limit (inherited by the processes spawned next) towards what ``concurrency`` needs.

    Returns (the soft limit now, the largest concurrency it allows).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = concurrency * _FDS_PER_REQUEST + _FD_SLACK
    if soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft, (soft - _FD_SLACK) // _FDS_PER_REQUEST


# One step of load -------------------------------------------------------------------------


@dataclass
class Load:
    """What one side saw at one step: every request started (finished or not), the failures, and the processes' use."""

    concurrency: int
    window: tuple[float, float]  # perf_counter times
    started: list[Response] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # share of one CPU over the window, per watched process
    rss_mb: float = 0.0  # peak resident set of the process under test during the step


async def _rss_peak(pid: int, peak: list[float], every_s: float = 0.25) -> None:
    while True:
        peak[0] = max(peak[0], procs.memory_mb(pid)["rss_mb"])
        await asyncio.sleep(every_s)


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))


async def load_step(
    side: Side, raw: bytes, concurrency: int, ramp_s: float, plan: CapacityPlan, watch: Mapping[str, int], under_test: str
) -> Load:
    """Hold ``concurrency`` requests in flight for ``ramp_s + window_s``; cancel what is still open at the end."""
    connections = side.connections(concurrency)
    t0 = time.perf_counter()
    load = Load(concurrency, (t0 + ramp_s, t0 + ramp_s + plan.window_s))
    timeout = ramp_s + plan.window_s + 30.0

    async def worker(index: int) -> None:
        conn = connections[index]
        await asyncio.sleep(ramp_s * index / concurrency)
        while True:
            response = Response()
            load.started.append(response)
            try:
                await conn.request(raw, timeout, response)
            except (HttpError, OSError) as exc:
                load.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            problem = ok_any(response)
            if problem:
                load.failures.append(problem)

    peak = [0.0]
    sampler = asyncio.ensure_future(_rss_peak(watch[under_test], peak))
    workers = [asyncio.ensure_future(worker(index)) for index in range(concurrency)]
    try:
        await _sleep_until(load.window[0])
        cpu_before = {name: procs.cpu_seconds(pid) for name, pid in watch.items()}
        loadgen_before = time.process_time()
        await _sleep_until(load.window[1])
        load.cpu = {name: round((procs.cpu_seconds(pid) - cpu_before[name]) / plan.window_s, 3) for name, pid in watch.items()}
        load.cpu["loadgen"] = round((time.process_time() - loadgen_before) / plan.window_s, 3)
    finally:
        for task in (*workers, sampler):
            task.cancel()
        await asyncio.gather(*workers, sampler, return_exceptions=True)
        for conn in connections:
            conn.close()
    load.rss_mb = peak[0]
    return load


async def settle(watch: Mapping[str, int], seconds: float, idle_share: float = 0.05) -> None:
    """Wait ``seconds``, then until the watched processes are idle (what the last step left is done), at most 5 s more."""
    await asyncio.sleep(seconds)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        before = sum(procs.cpu_seconds(pid) for pid in watch.values())
        await asyncio.sleep(0.2)
        if sum(procs.cpu_seconds(pid) for pid in watch.values()) - before < 0.2 * idle_share:
            return


# From the raw load to figures (pure) ------------------------------------------------------


def chunk_delays(started: list[Response], window: tuple[float, float], cadence_s: float) -> list[float]:
    """Gap minus cadence (s) of consecutive content chunks that both arrived inside ``window``."""
    low, high = window
    out = []
    for response in started:
        times = [t for t in response.content_times() if low <= t <= high] if response.t_first_byte else []
        out += [b - a - cadence_s for a, b in itertools.pairwise(times)]
    return out


def first_chunk_latencies(started: list[Response], window: tuple[float, float], censor_s: float) -> list[float]:
    """Start to first content chunk (s) of the streams started inside the window (censored at its end)."""
    return _timed(started, window, censor_s, lambda response: (response.content_times() or [0.0])[0])


def plain_latencies(started: list[Response], window: tuple[float, float], expected_s: float, censor_s: float) -> list[float]:
    """Start to complete answer (s) of the calls started inside the window (censored at its end)."""
    return _timed(started, window, expected_s + censor_s, lambda response: response.t_end)


def _timed(started: list[Response], window: tuple[float, float], margin_s: float, arrival: Callable[[Response], float]) -> list[float]:
    """``arrival(response) - t_start`` for each request started in the window at least ``margin_s`` before its end.

    A request without its answer by the window's end counts as having taken until then: a lower bound,
    and more than the margin, so it is never mistaken for a fast one.
    """
    low, high = window
    out = []
    for response in started:
        if not low <= response.t_start <= high - margin_s:
            continue
        arrived = arrival(response) if response.t_first_byte else 0.0
        out.append((arrived if 0.0 < arrived <= high else high) - response.t_start)
    return out


def chunks_in_window(started: list[Response], window: tuple[float, float]) -> int:
    """Content chunks that arrived inside ``window``, over every stream."""
    low, high = window
    return sum(1 for response in started if response.t_first_byte for t in response.content_times() if low <= t <= high)


def calls_in_window(started: list[Response], window: tuple[float, float]) -> int:
    """Calls whose whole answer arrived inside ``window``."""
    low, high = window
    return sum(1 for response in started if response.t_end and low <= response.t_end <= high)


def cpu_ms_per(units: int, cpu_share: Mapping[str, float], processes: tuple[str, ...], window_s: float) -> dict[str, float | None]:
    """CPU time (ms) per unit of work done in the window, for each of ``processes`` and their ``total``."""
    shares = {name: cpu_share[name] for name in processes if name in cpu_share}
    per = {name: round(share * window_s * 1000 / units, 4) if units else None for name, share in shares.items()}
    per["total"] = round(sum(shares.values()) * window_s * 1000 / units, 4) if units else None
    return per


def side_figures(load: Load, kind: str, plan: CapacityPlan, processes: tuple[str, ...] = ()) -> dict[str, Any]:
    """One side at one step: the delays (ms), failures, the processes' CPU and memory, and the CPU of ``processes`` per unit."""
    figures: dict[str, Any] = {
        "requests_started": sum(1 for response in load.started if response.t_start),
        "errors": len(load.failures),
        "first_error": load.failures[0][:200] if load.failures else None,
        "cpu_share": load.cpu,
        "rss_mb": load.rss_mb,
    }
    if kind == "streams":
        figures["chunk_delay_ms"] = summary_ms(chunk_delays(load.started, load.window, plan.chunk_delay_ms / 1000))
        figures["first_chunk_ms"] = summary_ms(first_chunk_latencies(load.started, load.window, plan.censor_s))
        figures["chunks_in_window"] = chunks_in_window(load.started, load.window)
        figures["cpu_ms_per_chunk"] = cpu_ms_per(figures["chunks_in_window"], load.cpu, processes, plan.window_s)
    else:
        figures["latency_ms"] = summary_ms(plain_latencies(load.started, load.window, plan.plain_delay_s, plan.censor_s))
        figures["calls_in_window"] = calls_in_window(load.started, load.window)
        figures["cpu_ms_per_call"] = cpu_ms_per(figures["calls_in_window"], load.cpu, processes, plan.window_s)
    return figures


def added(side: dict[str, Any], direct: dict[str, Any], kind: str) -> dict[str, float | None]:
    """What ``side`` adds to the emulator called directly at the same step, percentile by percentile (ms)."""
    keys = ("chunk_delay_ms", "first_chunk_ms") if kind == "streams" else ("latency_ms",)
    out: dict[str, float | None] = {}
    for key in keys:
        for pct in ("p50", "p99"):
            mine, base = side[key].get(pct), direct[key].get(pct)
            out[f"{key.removesuffix('_ms')}_{pct}"] = None if mine is None or base is None else round(mine - base, 3)
    return out


def within_capacity(side: dict[str, Any], added_ms: dict[str, float | None], kind: str) -> bool:
    """Nothing failed, and the p99 added delay (between chunks, or of the whole call) is at most ``LIMIT_MS``."""
    p99 = added_ms.get("chunk_delay_p99" if kind == "streams" else "latency_p99")
    return side["errors"] == 0 and p99 is not None and p99 <= LIMIT_MS


def knee(steps: list[dict[str, Any]], name: str) -> int | None:
    """The largest concurrency within capacity for side ``name`` (None when no step was)."""
    return max((step["concurrency"] for step in steps if step.get(name, {}).get("within_capacity")), default=None)


# The ramps -------------------------------------------------------------------------------


# Side name -> the process that does its work (its memory is sampled), and every process that works for it.
UNDER_TEST = {"direct": "pacer", "relay": "relay", "floor": "floor", "platform": "platform"}
PROCESSES = {"direct": ("pacer",), "relay": ("relay", "host"), "floor": ("floor",), "platform": ("platform", "platform_host")}


@dataclass
class Rig:
    sides: dict[str, Side]
    watch: dict[str, int]  # process name -> pid


@dataclass
class Climb:
    """Which sides still climb a ramp: a side stops after ``misses_to_stop`` steps in a row outside capacity.

    The ramp ends when every side in ``deciding`` (those the run's verdict compares) has stopped; a side
    still climbing then has a knee that is only a lower bound.
    """

    sides: tuple[str, ...]
    deciding: tuple[str, ...]
    misses_to_stop: int
    misses: dict[str, int] = field(default_factory=dict)

    def climbing(self) -> list[str]:
        return [name for name in self.sides if self.misses.get(name, 0) < self.misses_to_stop]

    def over(self) -> bool:
        return not any(name in self.climbing() for name in self.deciding)

    def record(self, name: str, within: bool) -> None:
        self.misses[name] = 0 if within else self.misses.get(name, 0) + 1


def knee_is_lower_bound(steps: list[dict[str, Any]], name: str) -> bool:
    """True when side ``name``'s last measured step was within capacity: the ramp ended before it missed."""
    measured = [step[name] for step in steps if name in step]
    return bool(measured) and bool(measured[-1].get("within_capacity"))


async def ramp(rig: Rig, kind: str, plan: CapacityPlan, steps: tuple[int, ...], deciding: tuple[str, ...]) -> dict[str, Any]:
    """Every step for every side still climbing, sides in rotating order, until the ``deciding`` sides have stopped."""
    body_prompt = plan.stream_prompt() if kind == "streams" else plan.plain_prompt()
    body = loadgen.chat_body(body_prompt, stream=kind == "streams")
    raws = {name: side.request(body) for name, side in rig.sides.items()}
    sides = tuple(name for name in rig.sides if name != "direct")
    climb = Climb(sides, deciding, plan.misses_to_stop)
    orders = list(itertools.permutations(rig.sides))
    out: list[dict[str, Any]] = []
    for index, concurrency in enumerate(steps):
        if climb.over():
            break
        climbing = climb.climbing()
        step: dict[str, Any] = {"concurrency": concurrency}
        for name in orders[index % len(orders)]:
            if name != "direct" and name not in climbing:
                continue
            load = await load_step(rig.sides[name], raws[name], concurrency, plan.ramp_s(kind), plan, rig.watch, UNDER_TEST[name])
            step[name] = side_figures(load, kind, plan, PROCESSES[name])
            await settle(rig.watch, plan.settle_s)
        for name in climbing:
            step[name]["added_ms"] = added(step[name], step["direct"], kind)
            step[name]["within_capacity"] = within_capacity(step[name], step[name]["added_ms"], kind)
            climb.record(name, step[name]["within_capacity"])
        if "relay" in climbing and "platform" in climbing:
            step["relay"]["vs_platform"] = versus_platform(step["relay"], step["platform"], kind)
        direct_p99 = step["direct"]["chunk_delay_ms" if kind == "streams" else "latency_ms"].get("p99")
        baseline = 0.0 if kind == "streams" else plan.plain_delay_s * 1000
        # The emulator and the load generator themselves late by more than the limit: the rig, not the relay, is the wall.
        step["rig_saturated"] = bool(step["direct"]["errors"]) or direct_p99 is None or direct_p99 - baseline > LIMIT_MS
        out.append(step)
    return {
        "steps": out,
        "knee": {name: knee(out, name) for name in sides},
        "knee_is_lower_bound": {name: knee_is_lower_bound(out, name) for name in sides},
    }


async def _warm_up(rig: Rig) -> None:
    """A few short calls of each kind through each side: the relay's first-use imports, its token, the pacer's recordings."""
    short = "[emulate:words=5] Warm up"
    for side in rig.sides.values():
        for body in (loadgen.chat_body(short), loadgen.chat_body(short, stream=True)):
            conn = side.connections(1)[0]
            for _ in range(3):
                response = await conn.request(side.request(body), 30.0)
                problem = ok_any(response)
                if problem:
                    raise RuntimeError(f"capacity warm-up through {side.name}: {problem}")
            conn.close()


def _over(mine: float | None, base: float | None) -> float | None:
    """``mine / base``; None when either is missing or the base is not positive (the ratio is then undefined)."""
    return round(mine / base, 3) if mine is not None and base is not None and base > 0 else None


def versus_platform(relay: dict[str, Any], platform: dict[str, Any], kind: str) -> dict[str, float | None]:
    """The relay over the platform floor at one step: added delays and CPU per chunk (streams) or per call."""
    unit = "cpu_ms_per_chunk" if kind == "streams" else "cpu_ms_per_call"
    out = {f"added_{key}": _over(value, platform["added_ms"].get(key)) for key, value in relay["added_ms"].items()}
    out[f"{unit}_total"] = _over(relay[unit].get("total"), platform[unit].get("total"))
    out[f"{unit}_worker"] = _over(relay[unit].get("relay"), platform[unit].get("platform"))
    return out


def platform_ratios(streams: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """The relay against the platform floor, both through the worker in the same run: the figures the targets name."""
    stream_knee = streams["knee"].get("relay")
    at_knee = next((step for step in streams["steps"] if step["concurrency"] == stream_knee and "platform" in step), None)
    first_steps = {kind: part["steps"][0] for kind, part in (("streams", streams), ("plain", plain)) if part["steps"]}
    return {
        "streams_knee_ratio": _over(stream_knee, streams["knee"].get("platform")),
        "plain_knee_ratio": _over(plain["knee"].get("relay"), plain["knee"].get("platform")),
        "first_chunk_p99_ratio_at_knee": (
            _over(at_knee["relay"]["first_chunk_ms"].get("p99"), at_knee["platform"]["first_chunk_ms"].get("p99")) if at_knee else None
        ),
        # CPU per chunk and per call at the first step, where neither side is saturated.
        "at_first_step": {kind: step["relay"].get("vs_platform") for kind, step in first_steps.items() if "relay" in step},
    }


async def measure(
    plan: CapacityPlan, work: Path, runtime: str = defaults.RUNTIME, host_cpu: str = "shared", telemetry: bool = False
) -> dict[str, Any]:
    """Start the emulator, the relay and the floor, pinned; ramp streams, then non-streamed calls.

    ``runtime="worker"``: the relay runs in the Python worker (``azure-functions-runtime``) behind the
    project's Functions host stand-in (``DEVHOST_RUNTIME=worker``), both processes on the relay's CPU, as
    the host and the worker share an instance in Azure; "relay" CPU and memory are then the worker's.
    The platform floor (``bench.platform_host``) runs the same way and is ramped beside it.
    ``host_cpu="other"``: both host stand-ins run on the rig's CPU, the workers alone on the relay's
    (indicative only: that CPU also runs the emulator and the load generator).
    ``telemetry``: the relay exports to the emulator's ingestion stand-in, as deployed with Application Insights.
    """
    worker = runtime == "worker"
    if host_cpu not in HOST_CPUS or (host_cpu == "other" and not worker):
        raise ValueError(f"host_cpu must be one of {HOST_CPUS}, and 'other' only with the worker runtime, not {host_cpu!r}")
    layout = cpu_layout(os.sched_getaffinity(0))
    host_cpus = layout.rig if host_cpu == "other" else layout.relay
    fd_soft, fd_allows = raise_fd_limit(plan.most)
    stream_steps = tuple(c for c in plan.stream_steps if c <= fd_allows)
    plain_steps = tuple(c for c in plan.plain_steps if c <= fd_allows)
    # The pool is sized above every step so that it is never the wall; waiting for a connection would be a 503.
    pool = max(DEFAULT_UPSTREAM_CONNECTIONS, 2 * plan.most)

    # The relay's managed identity endpoint stays the emulator's; its Azure OpenAI is the pacer.
    def upstream(pacer: procs.Proc) -> dict[str, str]:
        return {"RELAY_UPSTREAM_CONNECTIONS": str(pool), "AZURE_OPENAI_ENDPOINT": pacer.url, "DEVHOST_RUNTIME": runtime}

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        stack.enter_context(pinned(layout.rig))
        emulator = stack.enter_context(procs.emulator(work, cpus=layout.rig))
        pacer = stack.enter_context(procs.pacer(emulator.url, work, cpus=layout.rig))
        relay_env = upstream(pacer) | (procs.telemetry_env(emulator, work) if telemetry else {})
        relay = stack.enter_context(procs.relay_host(emulator.url, work, extra_env=relay_env, cpus=host_cpus))
        floor = stack.enter_context(procs.floor(pacer.url, work, connections=pool, cpus=layout.relay))
        sides = {
            "direct": Side.make("direct", pacer.url, loadgen.CHAT_PATH_DIRECT, procs.managed_identity_token(emulator.url)),
            "relay": Side.make("relay", relay.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(relay.url)),
            "floor": Side.make("floor", floor.url, loadgen.CHAT_PATH_DIRECT, "unused"),
        }
        watch = {"pacer": pacer.pid, "relay": relay.pid, "floor": floor.pid}
        if worker:
            platform = stack.enter_context(procs.platform_floor(emulator.url, work, extra_env=upstream(pacer), cpus=host_cpus))
            sides["platform"] = Side.make("platform", platform.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(platform.url))
            watch |= {"relay": procs.only_child(relay.pid), "host": relay.pid}
            watch |= {"platform": procs.only_child(platform.pid), "platform_host": platform.pid}
            if host_cpu == "other" and layout.relay is not None:
                procs.pin_threads(watch["relay"], layout.relay)
                procs.pin_threads(watch["platform"], layout.relay)
        rig = Rig(sides=sides, watch=watch)
        affinity = {name: sorted(os.sched_getaffinity(pid)) for name, pid in watch.items()}
        await _warm_up(rig)
        # Through the worker the verdict compares the relay with the platform floor; the bare passthrough, whose
        # knee the in-process run measures, climbs beside them only as far as they do.
        deciding = ("relay", "platform") if worker else tuple(name for name in sides if name != "direct")
        streams = await ramp(rig, "streams", plan, stream_steps, deciding)
        plain = await ramp(rig, "plain", plan, plain_steps, deciding)
        peak_rss = procs.memory_mb(rig.watch["relay"])["peak_rss_mb"]
    skipped = sorted(set(plan.stream_steps + plan.plain_steps) - set(stream_steps + plain_steps))
    where = {
        "shared": "; each Functions host stand-in shares its worker's CPU",
        "other": "; the Functions host stand-ins on the rig's CPU, the workers alone on the relay's (indicative only)",
    }
    return {
        "runtime": runtime,
        "host_cpu": host_cpu,
        "layout": layout.note + (where[host_cpu] if worker else ""),
        "cpus_of": affinity,
        "relay_telemetry": "on (Azure Monitor exporter to the emulator's ingestion stand-in)" if telemetry else "off",
        "relay_upstream_connections": pool,
        "relay_busy_timeout_s": f"default ({DEFAULT_BUSY_TIMEOUT_S:g})",
        "open_files_limit": fd_soft,
        "skipped_steps_for_open_files": skipped,
        "limit_ms": LIMIT_MS,
        "streams": {"chunk_delay_ms": plan.chunk_delay_ms, "words": plan.words, **streams},
        "plain": {"upstream_delay_s": plan.plain_delay_s, **plain},
        **({"platform": platform_ratios(streams, plain)} if worker else {}),
        "relay_peak_rss_mb": peak_rss,
        "ramp_s": {"streams": plan.ramp_s("streams"), "plain": plan.ramp_s("plain")},
        "window_s": plan.window_s,
        "duration_s": round(time.monotonic() - started, 1),
    }
