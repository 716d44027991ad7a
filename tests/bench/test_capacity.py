"""The capacity ramp's arithmetic, and its two helper servers over real sockets: the pacer and the bare passthrough."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import capacity, chunk_cost, loadgen, pacer, procs, profile_worker, run
from bench.client import Connection, Response
from bench.loadgen import Side

SSE_CONTENT = b'data: {"choices":[{"delta":{"content":"w"}}]}\n\n'
SSE_ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'


def _stream(t_start: float, arrivals: list[float]) -> Response:
    """A stream whose role chunk arrives with its first content chunk, then one content chunk per arrival."""
    pieces = [(arrivals[0], SSE_ROLE + SSE_CONTENT), *((t, SSE_CONTENT) for t in arrivals[1:])]
    return Response(status=200, t_start=t_start, t_first_byte=arrivals[0], pieces=pieces)


def test_chunk_delays_count_only_gaps_inside_the_window() -> None:
    # Chunks due every 50 ms; the third one came 30 ms late, the fourth on time again.
    response = _stream(0.0, [1.00, 1.05, 1.13, 1.15, 1.20, 9.0])
    delays = capacity.chunk_delays([response], (1.0, 2.0), 0.05)
    assert [round(d * 1000) for d in delays] == [0, 30, -30, 0]


def test_a_call_unanswered_when_the_window_closes_counts_as_that_slow_never_as_fast() -> None:
    window = (10.0, 20.0)
    answered = _stream(12.0, [12.004, 12.05])
    stuck = Response(status=200, t_start=13.0, t_first_byte=13.001)  # headers came, no content chunk yet
    never = Response(t_start=14.0)  # not a byte
    before_window = _stream(9.0, [9.001])
    too_late_to_judge = _stream(19.5, [19.9])
    latencies = capacity.first_chunk_latencies([answered, stuck, never, before_window, too_late_to_judge], window, censor_s=1.0)
    assert [round(v, 3) for v in latencies] == [0.004, 7.0, 6.0]


def test_plain_latency_windows_leave_room_for_the_expected_time() -> None:
    done = Response(status=200, t_start=11.0, t_first_byte=13.0, t_end=13.002)
    open_too_long = Response(status=200, t_start=12.0)
    started_too_late = Response(status=200, t_start=17.5, t_first_byte=19.5, t_end=19.5)
    latencies = capacity.plain_latencies([done, open_too_long, started_too_late], (10.0, 20.0), expected_s=2.0, censor_s=1.0)
    assert [round(v, 3) for v in latencies] == [2.002, 8.0]


def _step(concurrency: int, relay_p99: float | None, relay_errors: int = 0) -> dict:
    relay = {"errors": relay_errors, "chunk_delay_ms": {"p99": relay_p99}}
    direct = {"errors": 0, "chunk_delay_ms": {"p99": 1.0}}
    added = capacity.added({**relay, "first_chunk_ms": {}}, {**direct, "first_chunk_ms": {}}, "streams")
    return {"concurrency": concurrency, "relay": {**relay, "within_capacity": capacity.within_capacity(relay, added, "streams")}}


def test_the_knee_is_the_largest_step_within_capacity() -> None:
    steps = [_step(50, 2.0), _step(100, 10.9), _step(200, 11.1), _step(500, 30.0, relay_errors=1)]
    assert [step["relay"]["within_capacity"] for step in steps] == [True, True, False, False]
    assert capacity.knee(steps, "relay") == 100
    # A step that failed a single request is outside capacity whatever its delays.
    assert capacity.knee([_step(50, 1.0, relay_errors=1)], "relay") is None


def _knee_on(steps: tuple[int, ...], true_knee: float) -> int | None:
    """The knee a ramp over ``steps`` finds for a side whose p99 added delay crosses the limit at ``true_knee``."""
    # _step's emulator called directly has a p99 of 1 ms, which the added delay is measured from.
    return capacity.knee([_step(c, 1.0 + capacity.LIMIT_MS * c / true_knee) for c in steps], "relay")


@pytest.mark.parametrize("kind", ["stream_steps", "plain_steps"])
def test_on_the_worker_grid_a_relay_at_064_of_the_platform_floor_never_misses_one_half_for_the_grids_sake(kind: str) -> None:
    grid = getattr(capacity.WORKER_CAPACITY, kind)
    coarse = getattr(capacity.FULL_CAPACITY, kind)
    # True knees across the range the worker path reaches, the relay's 0.64 of the platform floor's or more.
    pairs = [(relay, platform) for platform in range(160, 1000, 7) for relay in range(grid[0], platform + 1, 11) if relay / platform >= 0.64]
    ratios = [_knee_on(grid, relay) / _knee_on(grid, platform) for relay, platform in pairs]  # type: ignore[operator]
    assert min(ratios) >= 0.5
    # The in-process grid cannot tell: a relay at 0.92 of the floor (knees 240 and 260) measured 100 against 250.
    assert _knee_on(coarse, 240) / _knee_on(coarse, 260) < 0.5  # type: ignore[operator]


@pytest.mark.parametrize(("quick", "runtime", "streams"), [(False, "worker", 11), (False, "relay", 7), (True, "worker", 1)])
def test_a_full_run_through_the_worker_climbs_the_finer_grid_and_nothing_else_does(quick: bool, runtime: str, streams: int) -> None:
    plan = run.plan_for(quick, runtime).capacity
    assert len(plan.stream_steps) == streams
    assert (plan == capacity.WORKER_CAPACITY) == (runtime == "worker" and not quick)


def test_the_ramp_ends_when_the_sides_it_compares_have_stopped_and_a_side_still_climbing_has_a_lower_bound() -> None:
    climb = capacity.Climb(("relay", "floor", "platform"), deciding=("relay", "platform"), misses_to_stop=2)
    outcomes = {"relay": [True, False, False], "platform": [True, True, False, True, False, False], "floor": [True] * 6}
    steps: list[dict] = []
    for index, concurrency in enumerate((100, 125, 160, 200, 250, 320)):
        assert not climb.over()
        step: dict = {"concurrency": concurrency}
        for name in climb.climbing():
            step[name] = {"within_capacity": outcomes[name][index]}
            climb.record(name, outcomes[name][index])
        steps.append(step)
    # The relay stopped after 160 (two misses in a row); the platform floor's miss at 160 was followed by a pass.
    assert [sorted(step) for step in steps][2:4] == [["concurrency", "floor", "platform", "relay"], ["concurrency", "floor", "platform"]]
    assert climb.over()
    assert {name: capacity.knee(steps, name) for name in ("relay", "platform", "floor")} == {"relay": 100, "platform": 200, "floor": 320}
    assert [capacity.knee_is_lower_bound(steps, name) for name in ("relay", "platform", "floor")] == [False, False, True]


def test_added_is_the_difference_of_percentiles_and_none_without_data() -> None:
    side = {"latency_ms": {"p50": 2001.5, "p99": 2010.0}}
    direct = {"latency_ms": {"p50": 2000.5, "p99": 2002.0}}
    assert capacity.added(side, direct, "plain") == {"latency_p50": 1.0, "latency_p99": 8.0}
    assert capacity.added({"latency_ms": {}}, direct, "plain") == {"latency_p50": None, "latency_p99": None}


def test_the_relay_gets_a_cpu_of_its_own_and_nothing_is_pinned_on_one_cpu() -> None:
    layout = capacity.cpu_layout({0, 1, 2})
    assert (layout.relay, layout.rig) == (frozenset({0}), frozenset({1, 2}))
    single = capacity.cpu_layout({3})
    assert (single.relay, single.rig) == (None, None)
    assert "nothing pinned" in single.note


def test_the_open_file_limit_bounds_the_largest_step(monkeypatch: pytest.MonkeyPatch) -> None:
    soft, allows = capacity.raise_fd_limit(10)
    assert allows >= 10
    assert soft >= 10 * 2
    # Soft 256, hard 1,024 open files: the soft limit rises to the hard one, which allows (1,024 - 512) / 2 requests.
    limits = [(256, 1024)]
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits[-1])
    monkeypatch.setattr(resource, "setrlimit", lambda _, new: limits.append(new))
    assert capacity.raise_fd_limit(2000) == (1024, 256)
    assert limits[-1] == (1024, 1024)


def test_the_pacer_reads_the_emulators_timing_directives_and_removes_them_for_the_recording() -> None:
    body = loadgen.chat_body("[emulate:chunk_delay_ms=40] [emulate:words=3] [emulate:slow=0.5] Hello", stream=True)
    assert pacer.timing(body) == pacer.Timing(chunk_delay_s=0.04, slow_s=0.5)
    assert json.loads(pacer.untimed(body))["messages"][0]["content"] == " [emulate:words=3]  Hello"
    assert pacer.timing(b"not json") == pacer.Timing()
    assert pacer.timing(loadgen.chat_body("[emulate:bogus] hi")) == pacer.Timing()


def test_a_recorded_stream_is_split_into_events_counted_against_the_content_before_them() -> None:
    body = b'data: {"choices":[]}\n\n' + SSE_ROLE + SSE_CONTENT + SSE_CONTENT + b'data: {"choices":[{"delta":{}}]}\n\ndata: [DONE]\n\n'
    recording = pacer.record(200, {"content-type": "text/event-stream; charset=utf-8"}, body)
    assert [before for before, _ in recording.events] == [0, 0, 0, 1, 2, 2]
    assert b"".join(chunk.split(b"\r\n", 1)[1][:-2] for _, chunk in recording.events) == body
    assert b"transfer-encoding: chunked" in recording.head
    plain = pacer.record(429, {"content-type": "application/json", "retry-after": "7"}, b"{}")
    assert plain.head.startswith(b"HTTP/1.1 429 ") and b"content-length: 2" in plain.head and plain.body == b"{}"


async def test_the_pacer_replays_the_emulators_answer_on_its_schedule_and_the_floor_passes_it_through(tmp_path: Path) -> None:
    with (
        procs.emulator(tmp_path) as emulator,
        procs.pacer(emulator.url, tmp_path) as paced,
        procs.floor(paced.url, tmp_path, connections=4) as floor,
    ):
        token = procs.managed_identity_token(emulator.url)
        sides = [
            Side.make("direct", emulator.url, loadgen.CHAT_PATH_DIRECT, token),
            Side.make("paced", paced.url, loadgen.CHAT_PATH_DIRECT, token),
            Side.make("floor", floor.url, loadgen.CHAT_PATH_DIRECT, "unused"),
        ]
        stream = loadgen.chat_body("[emulate:chunk_delay_ms=60] [emulate:words=4] Pace me", stream=True)
        texts = []
        for side in sides:
            response = await Connection(side.host, side.port).request(side.request(stream), 10.0)
            assert loadgen.ok_any(response) is None
            times = response.content_times()
            assert len(times) == 4
            # Never early: the fourth content chunk is due three cadences after the first, which is due at once
            # (a lower bound, which a slow machine cannot break).
            assert times[-1] - response.t_start >= 3 * 0.06, times
            texts.append(_content(response))
        # The same four words through the pacer and the floor as from the emulator itself.
        assert texts[0] == texts[1] == texts[2] == "Emulated gpt-4o-mini answer to:"
        slow = loadgen.chat_body("[emulate:slow=0.3] Take your time")
        for side in sides[1:]:
            started = time.perf_counter()
            response = await Connection(side.host, side.port).request(side.request(slow), 10.0)
            assert time.perf_counter() - started >= 0.3
            assert response.status == 200 and json.loads(response.body)["choices"][0]["message"]["content"].startswith("Emulated")
        refused = loadgen.chat_body("[emulate:status=429] Busy")
        for side in sides[1:]:
            response = await Connection(side.host, side.port).request(side.request(refused), 10.0)
            assert response.status == 429 and json.loads(response.body)["error"]["code"] == "429"


def _content(response: Response) -> str:
    text = ""
    for _, event in response.events():
        payload = event.removeprefix(b"data: ")
        if payload != b"[DONE]":
            for choice in json.loads(payload).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def test_cpu_per_unit_is_the_sides_processes_cpu_over_the_work_done_in_the_window() -> None:
    # Over a 10 s window the worker used 20 % of a CPU and its host 10 %, for 1,000 chunks: 2 ms and 1 ms each.
    share = {"relay": 0.2, "host": 0.1, "pacer": 0.5}
    assert capacity.cpu_ms_per(1000, share, ("relay", "host"), 10.0) == {"relay": 2.0, "host": 1.0, "total": 3.0}
    # The in-process relay has no host stand-in: only the processes that ran count.
    assert capacity.cpu_ms_per(1000, {"relay": 0.2}, ("relay", "host"), 10.0) == {"relay": 2.0, "total": 2.0}
    assert capacity.cpu_ms_per(0, share, ("relay",), 10.0) == {"relay": None, "total": None}


def test_only_chunks_and_answers_that_arrived_inside_the_window_are_counted() -> None:
    streams = [_stream(0.0, [0.5, 1.0, 1.5, 2.5]), _stream(1.2, [1.3, 1.4])]
    assert capacity.chunks_in_window(streams, (1.0, 2.0)) == 4
    calls = [
        Response(status=200, t_start=0.0, t_first_byte=1.5, t_end=1.5),
        Response(status=200, t_start=0.5, t_first_byte=2.5, t_end=2.5),
        Response(t_start=1.0),  # never answered
    ]
    assert capacity.calls_in_window(calls, (1.0, 2.0)) == 1


def _ramp_result(kind: str, knees: dict, first_chunk_p99: dict | None = None) -> dict:
    key = "chunk_delay" if kind == "streams" else "latency"
    unit = "cpu_ms_per_chunk" if kind == "streams" else "cpu_ms_per_call"
    step: dict = {"concurrency": 100}
    for name, cpu, added_p99 in (("relay", 0.6, 6.0), ("platform", 0.4, 2.0)):
        step[name] = {
            "added_ms": {f"{key}_p50": 1.0, f"{key}_p99": added_p99},
            unit: {name: cpu / 2, "total": cpu},
            "first_chunk_ms": {"p99": (first_chunk_p99 or {}).get(name)},
        }
    step["relay"]["vs_platform"] = capacity.versus_platform(step["relay"], step["platform"], kind)
    return {"steps": [step], "knee": knees}


def test_the_relay_is_compared_with_the_platform_floor_step_by_step_and_by_its_knees() -> None:
    streams = _ramp_result("streams", {"relay": 100, "platform": 250}, {"relay": 30.0, "platform": 10.0})
    plain = _ramp_result("plain", {"relay": None, "platform": 100})
    vs = streams["steps"][0]["relay"]["vs_platform"]
    assert vs == {
        "added_chunk_delay_p50": 1.0,
        "added_chunk_delay_p99": 3.0,
        "cpu_ms_per_chunk_total": 1.5,
        "cpu_ms_per_chunk_worker": 1.5,
    }
    ratios = capacity.platform_ratios(streams, plain)
    assert ratios["streams_knee_ratio"] == 0.4
    # The relay below the first step: the ratio is undefined, which the verdict counts as a miss, not a pass.
    assert ratios["plain_knee_ratio"] is None
    # At the relay's stream knee (100 streams) its first chunk p99 was three times the platform floor's.
    assert ratios["first_chunk_p99_ratio_at_knee"] == 3.0
    assert ratios["at_first_step"]["plain"]["cpu_ms_per_call_total"] == 1.5


def test_the_worker_profile_attributes_each_sample_to_its_innermost_library_and_leaves_waits_out() -> None:
    root = "<module> (devhost/functions_host/shell.py:215);run (asyncio/runners.py:194);Handle._run (asyncio/events.py:89)"
    stacks = "\n".join(
        [
            f"{root};SseForwarder.feed (shared/sse.py:51);bytes.find (re.py:1) 5",  # the standard library counts to its caller
            f"{root};RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:542) 3",
            f"{root};_StreamRequestMixin._write (grpc/aio/_call.py:500) 2",
            "Thread.run (threading.py:992);BatchProcessor.worker (opentelemetry/sdk/_shared_internal/__init__.py:162);"
            "LeanLogExporter._message_envelope (shared/lean_envelopes.py:76) 4",
            f"{root};chat_completions (bench/platform_floor/function_app.py:50) 1",
            f"{root};BaseEventLoop._run_once (asyncio/base_events.py:2012);EpollSelector.select (selectors.py:452) 9",
            "not a stack line",
        ]
    )
    total, grouped = profile_worker.by_component(stacks)
    assert total == 24
    assert grouped == [
        (profile_worker.WAITING, 9),
        ("relay: sse.py", 5),
        (profile_worker.EXPORTER_THREADS, 4),
        ("uvicorn (the worker's HTTP server)", 3),
        ("gRPC", 2),
        ("the app's function_app.py (the relay's routes, or the platform floor)", 1),
    ]


def test_the_relays_per_event_steps_are_timed_each_alone_and_summed() -> None:
    costs = chunk_cost.measure(2000)
    steps = {"frame_and_check_us", "hide_cached_tokens_us", "locked_write_us", "two_generator_layers_us"}
    assert set(costs) == steps | {"total_us"}
    assert all(costs[step] >= 0 for step in steps)
    # Framing and checking an event is real work on any machine; the total is the steps' sum.
    assert costs["frame_and_check_us"] > 0
    assert costs["total_us"] == pytest.approx(sum(costs[step] for step in steps), abs=0.01)


CYCLES = """
import gc, json, os, time
from pathlib import Path

class Node:
    pass

for _ in range(50):  # fifty two-node cycles, which reference counting cannot free
    a, b = Node(), Node()
    a.other, b.other = b, a
del a, b
gc.collect()
out = Path(os.environ["BENCH_GC_WATCH_DIR"]) / f"gc-{os.getpid()}.json"
deadline = time.monotonic() + 10
while time.monotonic() < deadline and (not out.exists() or json.loads(out.read_text())["generations"]["2"]["collections"] < 1):
    time.sleep(0.05)
print(os.getpid())
"""


def test_the_gc_watch_started_through_the_environment_counts_the_cycles_a_process_leaves_to_the_collector(tmp_path: Path) -> None:
    env = {**os.environ, **profile_worker.gc_watch_env(tmp_path)}
    pid = int(subprocess.run([sys.executable, "-c", CYCLES], env=env, capture_output=True, text=True, timeout=60, check=True).stdout)
    full = profile_worker.read_gc(tmp_path, pid)["2"]
    # 50 cycles of two nodes are 100 objects at least (their attributes may live inline, or in a dict each).
    assert full["collections"] >= 1 and full["unreachable"] >= 100
    assert profile_worker.read_gc(tmp_path, pid + 10**7) == {}


def test_the_gc_report_takes_the_window_between_two_readings_per_generation_and_per_unit() -> None:
    before = {"0": {"collections": 10, "pause_ms": 50.0, "longest_ms": 9.0, "unreachable": 0}}
    after = {"0": {"collections": 14, "pause_ms": 90.0, "longest_ms": 12.5, "unreachable": 400}}
    window = profile_worker.gc_between(before, after)
    assert window == {"0": {"collections": 4, "pause_ms": 40.0, "longest_ms": 12.5, "unreachable": 400}}
    assert profile_worker.gc_report(window, 100, "call")[1:] == [
        "  generation 0: 4 collections, 40 ms in all, longest 12.5 ms, 400 unreachable objects found",
        "  unreachable objects per call: 4.000 (reference counting frees the rest at once)",
    ]
