"""Bounded load and soak on loopback: many concurrent streams, then a long mix of streams, errors and cancellations.

Short form (default, part of ``make test``): 200 concurrent streams, then 1,500
mixed requests. Long form: ``RELAY_SOAK=long`` — 200 concurrent streams, then
20,000 mixed requests (a few minutes on two cores). Both stop by themselves.

Every request is checked against the emulator's record of it (found by the
request id, which the relay's log line maps to the ID it forwards as ``x-ms-client-request-id``): the status and
error code the caller got, the number of upstream attempts, the upstream
outcome, and for answers the exact deterministic text.

The baseline is taken after a warm-up, before any load. After each phase the
relay's asyncio tasks (tests.support.probe) are back to it, and so are the
relay process's file descriptors, read from /proc and split into caller-side
connections (none may stay open), upstream connections (at most the phase's
concurrency more: the keep-alive pool), half-closed connections (none) and the
rest (no more). Its RSS, sampled after every WAVE requests, shows no growth trend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from devhost.emulator.generation import plan_answer
from tests.reliability.common import new_id, probe
from tests.support.stack import Stack

LONG = os.environ.get("RELAY_SOAK", "").lower() == "long"
CONCURRENT_STREAMS = 200
MIX_REQUESTS = 20_000 if LONG else 1_500
# The emulator keeps its last 1000 records; a wave makes at most ~1.2 per request. RSS is sampled after
# each wave, so the short form gets 10 samples (9 fitted) and the long form 40.
WAVE = 500 if LONG else 150
CONCURRENCY = 48
SEED = 7
# Time for the relay to close what its callers and Azure OpenAI closed. It covers the emulator's
# keep-alive timeout (uvicorn's default, 5 s), after which the emulator closes idle pooled connections.
SETTLE_S = 10.0

# kind: (weight, expected status, expected code, upstream attempts, upstream outcome)
KINDS: dict[str, tuple[int, int, str | None, int, str | None]] = {
    "complete": (30, 200, None, 1, "completed"),
    "stream": (35, 200, None, 1, "completed"),
    "cancel": (10, 200, None, 1, "cancelled"),
    "rate_limited": (7, 429, "rate_limited", 1, "rejected"),
    "filtered": (6, 400, "content_filter", 1, "rejected"),
    "server_error": (2, 502, "upstream_error", 3, "rejected"),
    "not_allowed": (6, 400, "parameter_not_allowed", 0, None),
    "midstream": (4, 200, "upstream_error", 1, "failed"),
}


@dataclass
class Outcome:
    request_id: str
    kind: str
    status: int | None = None
    code: str | None = None
    text: str | None = None
    expected_text: str | None = None
    problems: list[str] = field(default_factory=list)


def prompt_for(kind: str, words: int, rng: random.Random) -> str:
    topic = rng.choice(["engines", "tides", "ferns", "glaciers", "looms"])
    directive = {
        "cancel": "[emulate:chunk_delay_ms=20] ",
        "rate_limited": "[emulate:rate_limit=30] ",
        "filtered": "[emulate:content_filter] ",
        "server_error": "[emulate:status=503] ",
        "midstream": "[emulate:midstream_fail] ",
    }.get(kind, "")
    return f"{directive}[emulate:words={words}] tell me about {topic}"


async def run_one(sdk: openai.AsyncOpenAI, kind: str, rng: random.Random) -> Outcome:
    outcome = Outcome(new_id(f"soak-{kind}"), kind)
    words = rng.randint(5, 40) if kind != "cancel" else 250  # long enough to be cut off even on a loaded machine
    messages: Any = [{"role": "user", "content": prompt_for(kind, words, rng)}]
    model = rng.choice(["gpt-4o-mini", "gpt-4o"])
    extra_body = {"data_sources": [{"type": "azure_search"}]} if kind == "not_allowed" else None
    headers = {"x-request-id": outcome.request_id}
    if kind in ("complete", "stream"):
        outcome.expected_text = plan_answer(model, messages, words, None).text
    try:
        if kind in ("stream", "cancel", "midstream"):
            stream = await sdk.chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True}, extra_headers=headers
            )
            parts: list[str] = []
            outcome.status, usage = 200, None
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage.completion_tokens
                    parts.extend(choice.delta.content or "" for choice in chunk.choices)
                    if kind == "cancel" and len(parts) >= 3:
                        await stream.close()
                        break
            except openai.APIError as exc:
                outcome.code = exc.code
            outcome.text = "".join(parts)
            if kind == "stream" and usage != words:
                outcome.problems.append(f"usage {usage} != {words}")
        else:
            answer = await sdk.chat.completions.create(model=model, messages=messages, extra_headers=headers, extra_body=extra_body)
            outcome.status, outcome.text = 200, answer.choices[0].message.content
    except openai.APIStatusError as exc:
        outcome.status, outcome.code = exc.status_code, exc.code
    except Exception as exc:
        outcome.problems.append(f"lost: {exc!r}")
    return outcome


def check(outcome: Outcome, records: list[dict[str, Any]]) -> list[str]:
    _, status, code, attempts, upstream_outcome = KINDS[outcome.kind]
    problems = list(outcome.problems)
    if (outcome.status, outcome.code) != (status, code):
        problems.append(f"unexpected {outcome.status}/{outcome.code}")
    if len(records) != attempts:
        problems.append(f"{len(records)} upstream records, expected {attempts}")
    if upstream_outcome is not None and any(r["outcome"] != upstream_outcome for r in records):
        spans = [round((r["finished_at"] or 0) - r["received_at"], 2) for r in records]
        problems.append(f"upstream outcomes {[r['outcome'] for r in records]} after {spans}s, expected {upstream_outcome}")
    if outcome.expected_text is not None and outcome.text != outcome.expected_text:
        problems.append(f"truncated or altered: {outcome.text!r:.80}")
    return problems


async def wait_for_records(stack: Stack, ids: set[str], timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while True:
        records = await asyncio.to_thread(stack.requests)
        # The relay sends its own request ID upstream; its log lines map each caller's ID to it.
        client_ids = {relay_id: client_id for client_id, relay_id in (await asyncio.to_thread(stack.relay_request_ids)).items()}
        by_id: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_id.setdefault(client_ids.get(record["headers"].get("x-ms-client-request-id", ""), ""), []).append(record)
        # Settled once every request's log line is written (else its records are not found yet) and every record is finished.
        settled = ids <= set(client_ids.values()) and all(r["outcome"] is not None for rid in ids for r in by_id.get(rid, []))
        if settled or time.monotonic() > deadline:
            return by_id
        await asyncio.sleep(0.1)


def new_client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.api}/v1", api_key=stack.token(), max_retries=0, timeout=60)


async def concurrent_streams(stack: Stack) -> float:
    """CONCURRENT_STREAMS streams open at the same moment (a barrier after each one's first chunk), each then read to the end."""
    barrier = asyncio.Barrier(CONCURRENT_STREAMS)
    tasks_seen: list[int] = []
    messages: Any = [{"role": "user", "content": "[emulate:words=50] [emulate:chunk_delay_ms=100] all together now"}]
    expected = plan_answer("gpt-4o-mini", messages, 50, None).text
    async with new_client(stack) as sdk:

        async def one(index: int) -> str:
            stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
            parts: list[str] = []
            async for chunk in stream:
                parts.extend(choice.delta.content or "" for choice in chunk.choices)
                if len(parts) == 1 and await barrier.wait() == 0:
                    tasks_seen.append((await asyncio.to_thread(probe, stack))["tasks"])
            return "".join(parts)

        started = time.monotonic()
        texts = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(CONCURRENT_STREAMS))), 60)
        elapsed = time.monotonic() - started
    assert texts == [expected] * CONCURRENT_STREAMS
    assert tasks_seen and tasks_seen[0] >= CONCURRENT_STREAMS, f"only {tasks_seen} tasks while {CONCURRENT_STREAMS} streams were open"
    return elapsed


async def settled_probe(stack: Stack, tasks_at_most: int | None = None, timeout: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        stats = await asyncio.to_thread(probe, stack, True)
        if tasks_at_most is None or stats["tasks"] <= tasks_at_most or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


TCP_LISTEN, TCP_CLOSE_WAIT = "0A", "08"


@dataclass(frozen=True)
class Descriptors:
    """The relay process's open file descriptors, by what they are connected to (from /proc/<pid>)."""

    caller: int  # TCP connections accepted on the relay's port: callers, through the local App Service front end
    upstream: int  # TCP connections to the emulator's port: Azure OpenAI and the managed identity endpoint
    close_wait: int  # caller or upstream connections the peer has closed and the relay still holds open
    other: int  # everything else: listening sockets, asyncio's self-pipe, files, ...

    def __str__(self) -> str:
        return f"caller {self.caller}, upstream {self.upstream}, close-wait {self.close_wait}, other {self.other}"


def _fd_targets(pid: int) -> list[str]:
    targets = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


def _tcp_table(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, state) for the TCP sockets of pid's network namespace."""
    table: dict[str, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/net/{name}", encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                table[f"socket:[{fields[9]}]"] = (local, remote, fields[3])
    return table


def descriptors(stack: Stack, pid: int) -> Descriptors:
    relay_port = stack.port
    emulator_port = urllib.parse.urlsplit(stack.emulator_url).port
    targets = _fd_targets(pid)
    table = _tcp_table(pid)
    caller = upstream = close_wait = 0
    for target in targets:
        local, remote, state = table.get(target, (0, 0, TCP_LISTEN))
        if state == TCP_LISTEN:
            continue
        caller += local == relay_port
        upstream += remote == emulator_port
        close_wait += state == TCP_CLOSE_WAIT and (local == relay_port or remote == emulator_port)
    return Descriptors(caller, upstream, close_wait, len(targets) - caller - upstream)


def excess(now: Descriptors, baseline: Descriptors, pooled: int) -> list[str]:
    """What the relay holds beyond its baseline, allowing ``pooled`` more idle upstream connections."""
    found = []
    if now.caller > baseline.caller:
        found.append(f"{now.caller - baseline.caller} caller connections left open")
    if now.upstream > baseline.upstream + pooled:
        found.append(f"{now.upstream - baseline.upstream} upstream connections, at most {pooled} may be pooled")
    if now.close_wait > baseline.close_wait:
        found.append(f"{now.close_wait - baseline.close_wait} connections closed by the peer and still held")
    if now.other > baseline.other:
        found.append(f"{now.other - baseline.other} other descriptors")
    return found


async def settled_descriptors(stack: Stack, pid: int, baseline: Descriptors, pooled: int) -> tuple[Descriptors, list[str]]:
    """The relay's descriptors once back within ``excess`` of the baseline, or after SETTLE_S, with what is still over."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = descriptors(stack, pid)
        found = excess(now, baseline, pooled)
        if not found or time.monotonic() > deadline:
            return now, found
        await asyncio.sleep(0.2)


async def warm_up(stack: Stack) -> None:
    """One answer and one stream per model: the managed identity token, the upstream session and lazy imports."""
    async with new_client(stack) as sdk:
        for model in ("gpt-4o-mini", "gpt-4o"):
            await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "warm up"}])
            stream = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "warm up"}], stream=True)
            async with stream:  # closed here, not by the garbage collector after the client is gone
                async for _ in stream:
                    pass


def rss_growth_projection_kb(samples: list[tuple[int, int]]) -> float:
    """Least-squares RSS slope (KB per request) times the requests in the run."""
    xs, ys = [float(x) for x, _ in samples], [float(y) for _, y in samples]
    slope = statistics.linear_regression(xs, ys).slope
    return slope * (xs[-1] - xs[0])


@pytest.mark.timeout(1200 if LONG else 120)
async def test_concurrent_streams_then_mixed_soak(load_stack: Stack) -> None:
    stack = load_stack
    await warm_up(stack)
    # Baseline: warmed up, before any load, once no caller is connected (the warm-up client is closed)
    # and nothing is half-closed.
    baseline_tasks = await settled_probe(stack, timeout=2)
    pid = baseline_tasks["pid"]  # the relay process: the probe answers from inside it
    quiet = Descriptors(caller=0, upstream=0, close_wait=0, other=sys.maxsize)
    baseline, _ = await settled_descriptors(stack, pid, quiet, pooled=sys.maxsize)

    # Margin, upstream side only: the relay keeps one aiohttp pool towards Azure OpenAI (keep-alive 60 s).
    # The pool reuses an idle connection before it opens one, so it never holds more connections than there
    # were upstream requests in flight at once: at most the phase's concurrency (one upstream request per
    # caller request at a time; retries are sequential). The managed identity token is cached since the
    # warm-up. The caller side has no margin: every client here is closed after its phase, so the relay
    # must have closed every caller connection; no connection may stay half-closed (the peer hung up, the
    # relay did not), whatever its side; nothing else (listeners, files) may grow.
    stream_s = await concurrent_streams(stack)
    after_streams_tasks = await settled_probe(stack, tasks_at_most=baseline_tasks["tasks"])
    after_streams, streams_excess = await settled_descriptors(stack, pid, baseline, pooled=CONCURRENT_STREAMS)

    rng = random.Random(SEED)
    kinds = [k for k, spec in KINDS.items() for _ in range(spec[0])]
    problems: list[tuple[str, str, list[str]]] = []
    rss: list[tuple[int, int]] = []
    counts: dict[str, int] = dict.fromkeys(KINDS, 0)
    done = 0
    started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with new_client(stack) as sdk:

        async def limited(kind: str, seed: int) -> Outcome:
            async with gate:
                return await run_one(sdk, kind, random.Random(seed))

        while done < MIX_REQUESTS:
            await asyncio.to_thread(stack.emulator, "DELETE", "/_emulator/requests")
            wave = [rng.choice(kinds) for _ in range(min(WAVE, MIX_REQUESTS - done))]
            outcomes = await asyncio.gather(*(limited(kind, rng.randrange(2**32)) for kind in wave))
            records = await wait_for_records(stack, {o.request_id for o in outcomes})
            for outcome in outcomes:
                counts[outcome.kind] += 1
                found = check(outcome, records.get(outcome.request_id, []))
                if found:
                    problems.append((outcome.kind, outcome.request_id, found))
            done += len(wave)
            rss.append((done, (await settled_probe(stack))["rss_kb"]))
    mix_s = time.monotonic() - started
    after_tasks = await settled_probe(stack, tasks_at_most=baseline_tasks["tasks"])
    # Connections pooled during the streams phase and not reused are closed by the emulator's keep-alive timeout.
    after, mix_excess = await settled_descriptors(stack, pid, baseline, pooled=CONCURRENCY)
    growth_kb = rss_growth_projection_kb(rss[1:]) if len(rss) > 2 else 0.0
    print(
        f"\nload: {CONCURRENT_STREAMS} concurrent streams in {stream_s:.1f}s; soak: {done} requests in {mix_s:.1f}s "
        f"({done / mix_s:.0f}/s) {counts}; problems {len(problems)}; "
        f"tasks {baseline_tasks['tasks']}->{after_streams_tasks['tasks']}->{after_tasks['tasks']}; "
        f"descriptors: baseline ({baseline}) -> after streams ({after_streams}) -> after soak ({after}); "
        f"rss {[kb // 1024 for _, kb in rss]} MB, projected growth {growth_kb / 1024:.1f} MB"
    )
    assert not problems, problems[:10]
    assert after_streams_tasks["tasks"] <= baseline_tasks["tasks"], (baseline_tasks, after_streams_tasks)
    assert after_tasks["tasks"] <= baseline_tasks["tasks"], (baseline_tasks, after_tasks)
    leaks = {
        f"after {CONCURRENT_STREAMS} concurrent streams ({after_streams})": streams_excess,
        f"after the mixed soak ({after})": mix_excess,
    }
    assert not any(leaks.values()), f"baseline ({baseline}); {leaks}"
    assert growth_kb < 16 * 1024, f"RSS grows: {rss}"


# --- amplification: large bodies against everyone else's streams -----------------------------

BURST = 8
MIB = 1024 * 1024
STALL_MARGIN_MS = 400.0


def large_bodies() -> list[tuple[str, bytes]]:
    """Bodies near the 4 MiB limit that cost the most to read: tiny content parts, and text."""
    tiny_parts = [{"type": "text", "text": "a"}] * (4 * MIB // 32)
    many_parts = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": tiny_parts}]}
    below_the_object_limit = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": tiny_parts[:1000]}] * 40}
    text = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * (4 * MIB // 6)}]}
    encoded = [("many_parts", json.dumps(many_parts).encode()), ("parts", json.dumps(below_the_object_limit).encode())]
    encoded.append(("text", json.dumps(text).encode()))
    assert all(len(body) < 4 * MIB for _, body in encoded), [len(body) for _, body in encoded]
    return encoded


async def post_raw(stack: Stack, token: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    head = (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


def loop_lag_ms(stack: Stack, seconds: float) -> float:
    """The relay's worst event-loop delay over ``seconds`` (tests.support.probe): what it made every other caller wait."""
    with urllib.request.urlopen(f"{stack.base_url}/_probe/lag?seconds={seconds}", timeout=seconds + 10) as resp:
        return float(json.load(resp)["max_lag_ms"])


@pytest.mark.timeout(120)
async def test_large_bodies_neither_stall_the_relay_for_other_callers_nor_grow_its_memory(load_stack: Stack) -> None:
    stack = load_stack
    await warm_up(stack)
    token = stack.token()
    pid = (await settled_probe(stack))["pid"]
    before_kb = peak_kb = rss_kb(pid)
    statuses: dict[str, list[int]] = {}
    lags: dict[str, float] = {}
    small = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()
    # The baseline: the same probe around a burst of small bodies, on this machine under its present load.
    for kind, body in [("small", small), *large_bodies()]:
        lag = asyncio.ensure_future(asyncio.to_thread(loop_lag_ms, stack, 3.0))
        await asyncio.sleep(0.3)  # the lag probe is ticking
        burst = asyncio.gather(*(post_raw(stack, token, body) for _ in range(BURST)))
        while not burst.done():
            peak_kb = max(peak_kb, rss_kb(pid))
            await asyncio.sleep(0.01)
        statuses[kind] = list(await burst)
        lags[kind] = await lag
    baseline = lags.pop("small")
    print(f"\namplification: {BURST} concurrent bodies of each kind {statuses}; relay event-loop stall at worst {lags} ms "
          f"(small bodies: {baseline} ms); relay RSS {before_kb // 1024} MB -> peak {peak_kb // 1024} MB")
    assert statuses == {"small": [200] * BURST, "many_parts": [400] * BURST, "parts": [200] * BURST, "text": [200] * BURST}
    # Before the parse was bounded, eight such bodies stalled other streams by ~760 ms and six raised RSS by ~600 MB.
    # The margin over the small-body baseline absorbs a loaded machine's scheduling and still catches that stall.
    assert max(lags.values()) < baseline + STALL_MARGIN_MS, f"the relay's event loop stalled {lags} ms (small bodies: {baseline} ms)"
    assert (peak_kb - before_kb) < 256 * 1024, f"RSS rose from {before_kb // 1024} to {peak_kb // 1024} MB"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
