"""Each instance's copy of the block list, re-read from the table in the background.

The first request of a worker starts the refresh task (inside the event loop, like the upstream
client) and waits for its first read; from then on a request only looks at the copy in memory
(:meth:`BlocklistCache.lookup`), never at storage. The task reads the whole table every
``refresh_s`` seconds, so a new row takes effect on every instance within that time (plus one read).

Rows are read untyped (:data:`shared.blocklist.UNTYPED_ROWS`), so one row, whatever its property
types say, can only be skipped: the rows that cannot block anything are named in one
``blocklist.rows_invalid`` line per refresh (at most ``_MAX_NAMED_ROWS``, with their count).

A read fails when storage refuses or does not answer, answers something that is not a page of rows,
or takes longer than ``read_deadline_s`` in all. Then the last good copy stays in force and the log
says so. When an instance has never read the table (a cold start during a storage outage),
``fail_open`` decides: serve unchecked, or answer 503 ``blocklist_unavailable`` (the default;
SECURITY.md says why); a request waits at most ``FIRST_READ_WAIT_S`` for the first read, and the
task retries every ``COLD_RETRY_S`` until a read succeeds.

After each good read, ``on_refresh`` (when given) is called: the relay ends the open streams of
callers the new copy blocks (``shared/open_streams.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any, Protocol

from shared.background import RepeatingTask
from shared.blocklist import UNTYPED_ROWS, BlockEntry, RowKey, Snapshot, audit_records, entry_from_row, rows_by_key
from shared.errors import blocklist_unavailable
from shared.logs import log_event

log = logging.getLogger("relay.blocklist")

COLD_RETRY_S = 2.0
# How long a request on an instance that has never read the list waits for the first read.
FIRST_READ_WAIT_S = 5.0
# A whole read (every page, each try) that takes longer has failed: a service that answers a byte at a
# time never trips the client's per-read timeout, and a read that never ends would freeze the copy silently.
READ_DEADLINE_S = 30.0
# Invalid rows named in one log line; the count is always complete.
_MAX_NAMED_ROWS = 10
# Changed rows recorded one by one per read (relay.audit); a larger change is counted.
_MAX_AUDITED = 100


class RowSource(Protocol):
    def list_entities(self, *, format: str) -> AsyncIterable[Mapping[str, Any]]: ...


class BlocklistCache:
    def __init__(
        self,
        table: RowSource,
        refresh_s: float,
        *,
        fail_open: bool,
        clock: Callable[[], float] = time.time,
        read_deadline_s: float = READ_DEADLINE_S,
        first_read_wait_s: float = FIRST_READ_WAIT_S,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._table = table
        self._on_refresh = on_refresh
        self._refresh_s = refresh_s
        self._read_deadline_s = read_deadline_s
        self._first_read_wait_s = first_read_wait_s
        self._fail_open = fail_open
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._rows: dict[RowKey, BlockEntry] | None = None  # the last read's rows, for the audit records
        self._read_at = 0.0
        self._failures = 0
        self._first_read = asyncio.Event()
        self._task = RepeatingTask("blocklist-refresh", self._refresh_once_more, self._pause, log)

    async def lookup(self, oid: str, tenant: str, ip: str, home_tenant: str | None = None) -> BlockEntry | None:
        """The entry blocking this caller, or None; raises 503 when there is no copy to check and the policy is fail-closed."""
        snapshot = self._snapshot
        if snapshot is None:
            self._task.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_read.wait(), self._first_read_wait_s)
            snapshot = self._snapshot
            if snapshot is None:
                if self._fail_open:
                    return None
                raise blocklist_unavailable(COLD_RETRY_S)
        return self.match(oid, tenant, ip, home_tenant)

    def match(self, oid: str, tenant: str, ip: str, home_tenant: str | None = None) -> BlockEntry | None:
        """The entry of the copy in memory that blocks this caller now, or None (also when nothing has been read yet)."""
        snapshot = self._snapshot
        return None if snapshot is None else snapshot.match(oid, tenant, ip, self._clock(), home_tenant)

    async def aclose(self) -> None:
        await self._task.aclose()

    def copy_age_s(self) -> float | None:
        """Seconds since this instance's copy was read, or None before the first read (the ``relay.blocklist_age`` gauge)."""
        return self._clock() - self._read_at if self._snapshot is not None else None

    async def refresh(self) -> bool:
        """Read the table once; keep the last good copy when that fails. Returns whether the read succeeded."""
        try:
            async with asyncio.timeout(self._read_deadline_s):
                rows = [row async for row in self._table.list_entities(format=UNTYPED_ROWS)]
        except Exception as exc:  # noqa: BLE001 - whatever stopped the read (refused, timed out, not a page of rows), the copy stays
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
        self._audit(rows_by_key(entries), now)
        self._read_at = now
        if first or self._failures:
            log_event(log, logging.INFO, "blocklist.loaded", entries=self._snapshot.size, failed_reads_before=self._failures)
        self._failures = 0
        if invalid:
            named = dict(sorted(invalid.items())[:_MAX_NAMED_ROWS])
            log_event(log, logging.WARNING, "blocklist.rows_invalid", count=len(invalid), rows=named)
        if self._on_refresh is not None:
            self._on_refresh()
        return True

    def _audit(self, rows: dict[RowKey, BlockEntry], now: float) -> None:
        """One ``relay.audit`` record per row that changed since the last read (none for the first read of this instance).

        Every instance that sees a change records it, whoever made it (the command, the automation, a SOAR
        tool): ``RelayAudit()`` keeps one of each. A change larger than ``_MAX_AUDITED`` rows records that many
        and counts the rest (``blocklist.changes_not_audited``): the table's own access log has every write.
        """
        before, self._rows = self._rows, rows
        if before is None:
            return
        records = audit_records(before, rows, now)
        for record in records[:_MAX_AUDITED]:
            log_event(log, logging.INFO, "relay.audit", **record)
        if len(records) > _MAX_AUDITED:
            log_event(log, logging.WARNING, "blocklist.changes_not_audited", count=len(records) - _MAX_AUDITED)

    async def _refresh_once_more(self) -> None:
        try:
            await self.refresh()
        finally:
            self._first_read.set()

    def _pause(self) -> float:
        return self._refresh_s if self._snapshot is not None else min(self._refresh_s, COLD_RETRY_S)

    def _log_failure(self, exc: Exception) -> None:
        if self._snapshot is None:
            policy = "serving unchecked (fail-open)" if self._fail_open else "refusing requests with 503 (fail-closed)"
            error, detail = type(exc).__name__, _first_line(exc)
            log_event(log, logging.ERROR, "blocklist.unavailable", error=error, detail=detail, failed_reads=self._failures, policy=policy)
            return
        log_event(
            log,
            logging.WARNING,
            "blocklist.refresh_failed",
            error=type(exc).__name__,
            detail=_first_line(exc),
            failed_reads=self._failures,
            kept_entries=self._snapshot.size,
            copy_age_s=round(self._clock() - self._read_at, 1),
        )


def _first_line(exc: Exception) -> str:
    """What went wrong, in a line: an SDK error names the HTTP status or the connection problem there."""
    return next(iter(str(exc).splitlines()), "")[:200]
