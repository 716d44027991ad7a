"""The local host with a test-only window into the relay process: ``GET /_probe/stats``.

Load and soak tests need the relay's own view of its resources (asyncio tasks,
open sockets, RSS), which no client can see. ``python -m tests.support.probe``
runs ``devhost`` with its host app wrapped in :class:`ProbeMiddleware`;
:func:`run_probed_stack` is ``run_stack`` with that module in place of
``devhost``. Never part of the deployed app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from devhost.__main__ import main as serve_devhost
from tests.support.stack import Stack, run_stack

PROBE_PATH = "/_probe/stats"
LAG_PATH = "/_probe/lag"
LAG_TICK_S = 0.005


def process_stats() -> dict[str, Any]:
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    rss_kb = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {"pid": os.getpid(), "tasks": len(asyncio.all_tasks()), "fds": len(fds), "sockets": sockets, "rss_kb": rss_kb}


async def loop_lag(seconds: float) -> dict[str, Any]:
    """How late the relay's event loop ran a 5 ms timer, at worst, over ``seconds``: how long it kept every caller waiting."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    worst = 0.0
    ticks = 0
    while loop.time() < end:
        due = loop.time() + LAG_TICK_S
        await asyncio.sleep(LAG_TICK_S)
        worst = max(worst, loop.time() - due)
        ticks += 1
    return {"max_lag_ms": round(worst * 1000, 1), "ticks": ticks}


class ProbeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in (PROBE_PATH, LAG_PATH):
            await self.app(scope, receive, send)
            return
        if scope["path"] == LAG_PATH:
            stats: dict[str, Any] = await loop_lag(float(scope["query_string"].decode().removeprefix("seconds=") or 1))
        else:
            if scope.get("query_string") == b"gc=1":
                gc.collect()
            # This request's own task is not part of the relay's load.
            stats = process_stats()
            stats["tasks"] -= 1
        body = json.dumps(stats).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def run_probed_stack(tmp_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """``run_stack``, with the relay process started as ``tests.support.probe``."""
    with run_stack(tmp_dir, env, module="tests.support.probe") as running:
        yield running


def main() -> None:
    serve_devhost(wrap=ProbeMiddleware)


if __name__ == "__main__":
    main()
