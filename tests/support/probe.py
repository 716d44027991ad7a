"""The local host with a test-only window into the relay process: ``GET /_probe/stats``.

Load and soak tests need the relay's own view of its resources (asyncio tasks,
open sockets, RSS), which no client can see. ``python -m tests.support.probe``
runs ``devhost`` unchanged except that the host app is wrapped in
:class:`ProbeMiddleware`; :func:`run_probed_stack` is ``run_stack`` with that
module in place of ``devhost``. Never part of the deployed app.
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
from unittest import mock

from starlette.types import ASGIApp, Receive, Scope, Send

PROBE_PATH = "/_probe/stats"


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


class ProbeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != PROBE_PATH:
            await self.app(scope, receive, send)
            return
        if scope.get("query_string") == b"gc=1":
            gc.collect()
        # This request's own task is not part of the relay's load.
        stats = process_stats()
        stats["tasks"] -= 1
        body = json.dumps(stats).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def run_probed_stack(tmp_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Any]:
    """``tests.support.stack.run_stack``, with the relay process started as ``tests.support.probe``."""
    from tests.support import stack

    real = stack.run_python_module  # type: ignore[attr-defined]

    def probed(module: str, *args: Any, **kwargs: Any) -> Any:
        return real("tests.support.probe" if module == "devhost" else module, *args, **kwargs)

    with mock.patch.object(stack, "run_python_module", probed):
        running = stack.run_stack(tmp_dir, env)
        started = running.__enter__()
    try:
        yield started
    finally:
        running.__exit__(None, None, None)


def main() -> None:
    import devhost.__main__
    import devhost.host

    create_host_app = devhost.host.create_host_app

    def probed_host_app(*args: Any, **kwargs: Any) -> ASGIApp:
        return ProbeMiddleware(create_host_app(*args, **kwargs))

    # devhost.__main__.main imports create_host_app from devhost.host when it starts serving.
    devhost.host.create_host_app = probed_host_app
    devhost.__main__.main()


if __name__ == "__main__":
    main()
