"""``python -m bench.chunk_cost``: the CPU the relay's own per-event steps cost, each alone, in µs per event.

What the relay does for each streamed event that a pass-through does not: frame the upstream
bytes into whole events and check each one's shape (``SseForwarder.feed``, the usage chunk alone
decoded), rewrite ``cached_tokens`` (``hide_cached_tokens``, on unless exposed), and write through
``ForwardedStream``'s lock with a time stamp for its keep-alive timer; its events also pass
through two more async generators than a pass-through's. Each step runs ``--events`` times in a
loop timed with ``time.process_time``: CPU time, which other work on the machine inflates far
less than wall-clock time, so the figures compare with the worker's CPU per chunk from
``python -m bench --capacity-only --runtime worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable

from shared.completion import hide_cached_tokens
from shared.sse import SseForwarder

# A content chunk as Azure OpenAI streams it (one word, with its content filter results).
EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
    b'"delta":{"content":" word"},"finish_reason":null,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}\n\n'
)


def _per_event_us(events: int, step: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(events):
        step()
    return (time.process_time() - started) / events * 1e6


async def _async_per_event_us(events: int) -> dict[str, float]:
    lock, loop = asyncio.Lock(), asyncio.get_running_loop()

    async def send(message: dict[str, object]) -> None:
        return None

    started = time.process_time()
    for _ in range(events):
        async with lock:
            loop.time()
            await send({"type": "http.response.body", "body": EVENT, "more_body": True})
    write = (time.process_time() - started) / events * 1e6

    async def source() -> AsyncIterator[bytes]:
        for _ in range(events):
            yield EVENT

    async def layer(inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for data in inner:
            yield data

    started = time.process_time()
    async for _ in layer(layer(source())):
        pass
    layered = time.process_time() - started
    started = time.process_time()
    async for _ in source():
        pass
    bare = time.process_time() - started
    return {"locked_write_us": round(write, 3), "two_generator_layers_us": round(max(0.0, layered - bare) / events * 1e6, 3)}


def measure(events: int) -> dict[str, float]:
    """µs of CPU per event for each of the relay's own per-event steps, and their sum."""
    forwarder = SseForwarder(hide_usage=True)  # cached_tokens apart, below
    out = {
        "frame_and_check_us": round(_per_event_us(events, lambda: forwarder.feed(EVENT)), 3),
        "hide_cached_tokens_us": round(_per_event_us(events, lambda: hide_cached_tokens(EVENT)), 3),
        **asyncio.run(_async_per_event_us(events)),
    }
    out["total_us"] = round(sum(out.values()), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chunk_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    for name, value in measure(args.events).items():
        print(f"{name.removesuffix('_us'):>24}: {value:.3f} µs of CPU per event")


if __name__ == "__main__":
    main()
