"""Each instance's copy of the block list, re-read from the table in the background.

The first request of a worker starts the refresh task (inside the event loop, like the upstream
client) and waits for its first read; from then on a request only looks at the copy in memory
(:meth:`BlocklistCache.lookup`), never at storage. The task reads the whole table every
``refresh_s`` seconds, so a new row takes effect on every instance within that time (plus one read).

When a read fails, the last good copy stays in force and the log says so. When an instance has
never read the table (a cold start during a storage outage), ``fail_open`` decides: serve unchecked,
or answer 503 ``blocklist_unavailable`` (the default; SECURITY.md says why); it retries every
``COLD_RETRY_S`` until a read succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.background import RepeatingTask
from shared.blocklist import BlockEntry, Snapshot, entry_from_row
from shared.errors import blocklist_unavailable
from shared.logs import log_event

log = logging.getLogger("relay.blocklist")

COLD_RETRY_S = 2.0
# Invalid rows named in one log line; the count is always complete.
_MAX_NAMED_ROWS = 10


class RowSource(Protocol):
    def list_entities(self) -> AsyncIterable[Mapping[str, Any]]: ...


class BlocklistCache:
    def __init__(self, table: RowSource, refresh_s: float, *, fail_open: bool, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._refresh_s = refresh_s
        self._fail_open = fail_open
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0
        self._failures = 0
        self._invalid: frozenset[str] = frozenset()
        self._first_read = asyncio.Event()
        self._task = RepeatingTask("blocklist-refresh", self._refresh_once_more, self._pause, log)

    async def lookup(self, oid: str, tenant: str, ip: str) -> BlockEntry | None:
        """The entry blocking this caller, or None; raises 503 when there is no copy to check and the policy is fail-closed."""
        snapshot = self._snapshot
        if snapshot is None:
            self._task.start()
            await self._first_read.wait()
            snapshot = self._snapshot
            if snapshot is None:
                if self._fail_open:
                    return None
                raise blocklist_unavailable(COLD_RETRY_S)
        return snapshot.match(oid, tenant, ip, self._clock())

    async def aclose(self) -> None:
        await self._task.aclose()

    def copy_age_s(self) -> float | None:
        """Seconds since this instance's copy was read, or None before the first read (the ``relay.blocklist_age`` gauge)."""
        return self._clock() - self._read_at if self._snapshot is not None else None

    async def refresh(self) -> bool:
        """Read the table once; keep the last good copy when that fails. Returns whether the read succeeded."""
        try:
            rows = [row async for row in self._table.list_entities()]
        except AzureError as exc:
            self._failures += 1
            self._log_failure(exc)
            return False
        entries: list[BlockEntry] = []
        invalid: dict[str, str] = {}
        for row in rows:
            try:
                entries.append(entry_from_row(row))
            except ValueError as exc:
                invalid[f"{row.get('PartitionKey')}/{row.get('RowKey')}"] = str(exc)
        now = self._clock()
        first = self._snapshot is None
        self._snapshot = Snapshot(entries, now)
        self._read_at = now
        if first or self._failures:
            log_event(log, logging.INFO, "blocklist.loaded", entries=self._snapshot.size, failed_reads_before=self._failures)
        self._failures = 0
        if frozenset(invalid) != self._invalid:
            self._invalid = frozenset(invalid)
            if invalid:
                named = dict(sorted(invalid.items())[:_MAX_NAMED_ROWS])
                log_event(log, logging.WARNING, "blocklist.rows_invalid", count=len(invalid), rows=named)
        return True

    async def _refresh_once_more(self) -> None:
        try:
            await self.refresh()
        finally:
            self._first_read.set()

    def _pause(self) -> float:
        return self._refresh_s if self._snapshot is not None else min(self._refresh_s, COLD_RETRY_S)

    def _log_failure(self, exc: AzureError) -> None:
        if self._snapshot is None:
            policy = "serving unchecked (fail-open)" if self._fail_open else "refusing requests with 503 (fail-closed)"
            log_event(log, logging.ERROR, "blocklist.unavailable", error=type(exc).__name__, failed_reads=self._failures, policy=policy)
            return
        log_event(
            log,
            logging.WARNING,
            "blocklist.refresh_failed",
            error=type(exc).__name__,
            failed_reads=self._failures,
            kept_entries=self._snapshot.size,
            copy_age_s=round(self._clock() - self._read_at, 1),
        )
