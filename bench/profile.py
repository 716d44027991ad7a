"""``python -m bench.profile``: where the relay's time goes under load (py-spy, sampling the relay process).

Starts the emulator and the local host as ``python -m bench`` does, drives
relayed non-streamed completions (optionally a share of streams) for a few
seconds, samples the relay process with ``py-spy record --format raw`` and
prints the heaviest functions, by own time and by inclusive time, and the
samples grouped by component (the innermost frame of the relay, the local
host, Starlette, uvicorn, aiohttp or the floor; standard-library frames count
to their caller) in milliseconds of CPU per request. ``--telemetry`` runs the relay with its
telemetry on (as bench/telemetry_cost.py does); its exporters' threads are one component.
``--target floor``
profiles the bare passthrough (bench/floor.py) under the same load instead,
for the comparison. py-spy is in requirements-bench.txt (``make bench`` installs it);
``--py-spy`` points at another copy. ``python -m bench.profile_worker`` profiles the worker path.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench import loadgen, procs
from bench.loadgen import Side, run_block
from devhost.defaults import ROOT


def _stacks(raw: str) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first and shortened; samples) for each line of py-spy's collapsed stacks."""
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if count_text.isdigit():
            yield [short_frame(frame) for frame in stack.split(";") if frame], int(count_text)


def aggregate(raw: str, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, heaviest by own samples, heaviest by inclusive samples) from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(raw):
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own.most_common(top), inclusive.most_common(top)


# Path prefixes (as short_frame leaves them) of the code that is not the standard library, and the component each is.
COMPONENTS = (
    ("shared/", None),  # the relay: one component per module, e.g. "relay: easyauth.py"
    ("function_app.py", "relay: function_app.py"),
    ("devhost/", "local host (front end, Easy Auth emulation, limits)"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn (httptools)"),
    ("aiohttp/", "aiohttp client"),
    ("multidict/", "aiohttp client"),
    ("yarl/", "aiohttp client"),
    ("bench/floor.py", "floor"),
)
EVENT_LOOP = "event loop and socket I/O (uvloop's C code, below the frames that start the server)"
# The frames that start the server and run the loop: a sample with nothing above them is the loop's own work.
_LOOP_RUNNERS = ("uvicorn/server.py", "devhost/__main__.py")
# With --telemetry: the OpenTelemetry SDK's threads that run the exporters (py-spy names a frame by its
# function and the module's last directories only, so a thread is known by its outermost SDK frame).
EXPORTER_THREADS = "telemetry: the exporters' threads (conversion to envelopes, encoding, sending)"
_EXPORTER_THREAD_FRAMES = ("BatchProcessor.worker (", "PeriodicExportingMetricReader._ticker (")


def in_exporter_thread(frames: list[str]) -> bool:
    """A sample of one of the telemetry exporters' threads (their batch processors, the metric reader)."""
    return any(frame.startswith(_EXPORTER_THREAD_FRAMES) for frame in frames)


def match_component(where: str, components: Sequence[tuple[str, str | None]]) -> str | None:
    """The component whose path prefix ``where`` (a shortened frame's location) starts with; a relay module names its own."""
    for prefix, name in components:
        if where.startswith(prefix):
            return name or f"relay: {where.removeprefix(prefix).split(':', 1)[0]}"
    return None


def component(frames: list[str]) -> str:
    """The component of a sample: its innermost non-standard-library frame's (standard library counts to its caller)."""
    if in_exporter_thread(frames):
        return EXPORTER_THREADS
    for frame in reversed(frames):
        function, _, where = frame.rpartition(" (")
        if where.startswith(_LOOP_RUNNERS) or (where.startswith("bench/floor.py") and function in ("main", "<module>")):
            return EVENT_LOOP
        name = match_component(where, COMPONENTS)
        if name is not None:
            return name
    return EVENT_LOOP


def count_by(raw: str, classify: Callable[[list[str]], str]) -> tuple[int, list[tuple[str, int]]]:
    """(samples, samples per class, heaviest first) from py-spy's collapsed stacks."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _stacks(raw):
        total += count
        counts[classify(frames)] += count
    return total, counts.most_common()


def by_component(raw: str) -> tuple[int, list[tuple[str, int]]]:
    """(samples, samples per component, heaviest first) from py-spy's collapsed stacks."""
    return count_by(raw, component)


def short_frame(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py:123)``, with site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def default_py_spy() -> str:
    """py-spy beside this interpreter (requirements-bench.txt installs it there), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


async def drive(side: Side, seconds: float, concurrency: int, streamed_every: int, watch: dict[str, int]) -> tuple[int, float]:
    conns = side.connections(concurrency)

    def raw(index: int) -> bytes:
        return side.stream if streamed_every and index % streamed_every == streamed_every - 1 else side.plain

    done, cpu = 0, 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        block = await run_block(conns, raw, 16, watch)
        if block.errors:
            raise RuntimeError(block.errors[0])
        done += len(block.responses)
        cpu += block.cpu_s["target"]
    for conn in conns:
        conn.close()
    return done, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--py-spy", default=default_py_spy(), help="the py-spy executable (default: beside this Python, else on PATH)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--streamed-every", type=int, default=0, help="every Nth request streamed (0: none)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also keep py-spy's raw collapsed stacks here")
    parser.add_argument("--target", choices=("relay", "floor"), default="relay", help="the process to load and sample")
    parser.add_argument(
        "--telemetry", action="store_true", help="the relay exporting to the ingestion stand-in, as bench/telemetry_cost.py's B side"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="relay-profile-") as tmp:
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            emulator = stack.enter_context(procs.emulator(work))
            if args.target == "floor":
                target = stack.enter_context(procs.floor(emulator.url, work))
                side = Side.make("floor", target.url, loadgen.CHAT_PATH_DIRECT, "unused")
            else:
                extra_env = procs.telemetry_env(emulator, work) if args.telemetry else None
                target = stack.enter_context(procs.relay_host(emulator.url, work, extra_env=extra_env))
                side = Side.make("relay", target.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(target.url))
            watch = {"target": target.pid}
            asyncio.run(drive(side, 2.0, args.concurrency, args.streamed_every, watch))  # warm-up
            raw_path = args.out or work / "stacks.txt"
            spy = subprocess.Popen(
                [
                    args.py_spy,
                    "record",
                    "--pid",
                    str(target.pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--nonblocking",
                    "--output",
                    str(raw_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(1.0)
            done, cpu = asyncio.run(drive(side, args.seconds, args.concurrency, args.streamed_every, watch))
            spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            _, err = spy.communicate(timeout=30)
            if not raw_path.exists():
                print(err.decode(errors="replace"), file=sys.stderr)
                return 2
            raw = raw_path.read_text(encoding="utf-8")
            total, own, inclusive = aggregate(raw, args.top)
    per_request_ms = cpu * 1000 / max(1, done)
    print(
        f"{done} requests through the {args.target} at concurrency {args.concurrency}: CPU {per_request_ms:.3f} ms/request; {total} samples"
    )
    grouped_total, grouped = by_component(raw)
    # py-spy cannot tell uvloop's waiting in C from its work: below full load, the event loop's share also holds idle time,
    # and the split of the CPU per request is exact only for a saturated process (for example at concurrency 16).
    print("\nby component (share of samples, and that share of the CPU per request):")
    for name, count in grouped:
        share = count / max(1, grouped_total)
        print(f"  {100 * share:5.1f}%  {share * per_request_ms:6.3f} ms  {name}")
    print("\nown time (leaf frame):")
    for frame, count in own:
        print(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    print("\ninclusive time:")
    for frame, count in inclusive:
        print(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
