"""``python -m bench.profile``: where the relay's time goes under load (py-spy, sampling the relay process).

Starts the emulator and the local host as ``python -m bench`` does, drives
relayed non-streamed completions (optionally a share of streams) for a few
seconds, samples the relay process with ``py-spy record --format raw`` and
prints the heaviest functions, by own time and by inclusive time.
py-spy is not a project dependency: install it anywhere (``pip install py-spy``
into a separate venv) and pass its path with ``--py-spy``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import loadgen, procs
from bench.loadgen import Side, run_block


def aggregate(raw: str, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, heaviest by own samples, heaviest by inclusive samples) from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own.most_common(top), inclusive.most_common(top)


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py:123)``, with site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", f"{procs.ROOT}/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


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
        cpu += block.cpu_s["relay"]
    for conn in conns:
        conn.close()
    return done, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--streamed-every", type=int, default=0, help="every Nth request streamed (0: none)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also keep py-spy's raw collapsed stacks here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="relay-profile-") as tmp:
        work = Path(tmp)
        with procs.emulator(work) as emulator, procs.relay_host(emulator.url, work) as relay:
            token = procs.get_json(f"{relay.url}/_dev/token")
            assert isinstance(token, dict)
            side = Side.make("relay", relay.url, loadgen.CHAT_PATH_RELAY, str(token["access_token"]))
            watch = {"relay": relay.pid}
            asyncio.run(drive(side, 2.0, args.concurrency, args.streamed_every, watch))  # warm-up
            raw_path = args.out or work / "relay.txt"
            spy = subprocess.Popen(
                [
                    args.py_spy,
                    "record",
                    "--pid",
                    str(relay.pid),
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
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            _, err = spy.communicate(timeout=30)
            if not raw_path.exists():
                print(err.decode(errors="replace"), file=sys.stderr)
                return 2
            total, own, inclusive = aggregate(raw_path.read_text(encoding="utf-8"), args.top)
    print(
        f"{done} relayed requests at concurrency {args.concurrency}: relay CPU {cpu * 1000 / max(1, done):.3f} ms/request; {total} samples"
    )
    print("\nown time (leaf frame):")
    for frame, count in own:
        print(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    print("\ninclusive time:")
    for frame, count in inclusive:
        print(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
