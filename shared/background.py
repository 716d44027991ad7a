"""A worker's background task: one step again and again, a pause apart, for the life of the process.

Started on first use inside the running event loop (never at import time: aiohttp and the
Azure SDK bind to the loop), stopped by ``aclose``. A step that raises is logged (one JSON line,
shared/logs.py) and the next one runs anyway: a control whose task had died would silently stop changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.logs import log_failure


class RepeatingTask:
    def __init__(self, name: str, step: Callable[[], Awaitable[object]], pause: Callable[[], float], log: logging.Logger) -> None:
        self._name = name
        self._step = step
        self._pause = pause
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task in the running event loop, once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        log = self._log
        while True:
            try:
                await self._step()
            except Exception as exc:  # noqa: BLE001 - logged by log_failure (one JSON line, not logging.exception)
                log_failure(log, f"{self._name}.crashed", exc)
            await asyncio.sleep(self._pause())
