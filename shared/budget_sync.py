"""Writes each instance's token counts to the budget table and reads the shared totals back, in the background.

Every ``flush_s`` seconds, for each tally of :class:`shared.budget.Budgets` that has tokens
to write: read the subject's row, add them, and replace the row only if nobody changed it
since (ETag, ``If-Match``); on a conflict, read again and retry. Tallies with nothing to
write but a recently active subject are re-read, so each instance learns what the others
spent. A failed write puts the tokens back to be written with the next sync: during a storage
outage nothing is lost, each instance keeps enforcing what it knows, and the log says so.

The first request of a subject on an instance waits, once and at most ``LOAD_TIMEOUT_S``, for
the subject's row (:meth:`BudgetSync.load`), so that an instance that has not seen a user yet
does not admit them on an empty count; requests after it never wait.

Row schema (PartitionKey ``user:<oid>`` or ``tenant:<tid>``, RowKey the UTC day ``YYYYMMDD``,
``Tokens`` and ``MinuteTokens`` written as ``Edm.Int64``, ``Minute``; rows written as ``Edm.Int32``
by earlier versions are read and rewritten as 64-bit): docs/blocklist.md, "The budget table".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty

from shared.background import RepeatingTask
from shared.budget import Budgets, DayTally, TallyKey, Totals, add_usage
from shared.logs import log_event

log = logging.getLogger("relay.budget")

# Rows written at once; each is one read and one write.
_CONCURRENCY = 8
# Tries of one read-modify-write when other instances keep winning the race.
_MAX_ATTEMPTS = 5
# The longest a first request waits for its row; then it is admitted on this instance's allowance alone.
LOAD_TIMEOUT_S = 2.0


class ConflictError(RuntimeError):
    """Other instances changed the row on every try; the tokens wait for the next sync."""


class BudgetTable(Protocol):
    """What the sync needs of ``azure.data.tables.aio.TableClient``."""

    def get_entity(self, partition_key: str, row_key: str) -> Awaitable[Any]: ...

    def create_entity(self, entity: Mapping[str, Any]) -> Awaitable[Any]: ...

    def update_entity(self, entity: Mapping[str, Any], **kwargs: Any) -> Awaitable[Any]: ...


def partition_key(key: TallyKey) -> str:
    subject, name, _ = key
    return f"{subject}:{name}"


def totals_of(row: Mapping[str, Any]) -> Totals:
    return Totals(_number(row.get("Tokens")), _number(row.get("Minute"), default=-1), _number(row.get("MinuteTokens")))


def _number(value: Any, default: int = 0) -> int:
    # Int64 properties come back from the SDK as EntityProperty(value, EdmType.INT64).
    value = getattr(value, "value", value)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class BudgetSync:
    def __init__(self, budgets: Budgets, table: BudgetTable, flush_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._budgets = budgets
        self._table = table
        self._clock = clock
        self._failing_since: float | None = None
        self._loading: dict[TallyKey, asyncio.Task[None]] = {}
        self._task = RepeatingTask("budget-sync", self.sync, lambda: flush_s, log)

    def start(self) -> None:
        """Start the sync task in the running event loop, once."""
        self._task.start()

    async def aclose(self) -> None:
        """Stop the task and try once more to write what is pending (the local host calls this at shutdown)."""
        await self._task.aclose()
        await self.sync()

    async def load(self, tallies: list[tuple[TallyKey, DayTally]]) -> None:
        """Read these tallies' rows, waiting at most LOAD_TIMEOUT_S; concurrent first requests share one read.

        A read that fails or is late leaves the tally unloaded: the background sync reads it
        later, and meanwhile the instance admits on its allowance alone (docs/design.md).
        """
        reads = []
        for key, tally in tallies:
            task = self._loading.get(key)
            if task is None:
                task = self._loading[key] = asyncio.ensure_future(self._load_one(key, tally))
            reads.append(task)
        if reads:
            await asyncio.wait(reads, timeout=LOAD_TIMEOUT_S)

    async def _load_one(self, key: TallyKey, tally: DayTally) -> None:
        try:
            read = await self._read(key)
        except AzureError as exc:
            log_event(log, logging.WARNING, "budget.load_failed", subject=partition_key(key), error=type(exc).__name__)
        else:
            if not tally.loaded:
                tally.end_read(read)
        finally:
            tally.load_tried = True
            del self._loading[key]

    async def sync(self) -> bool:
        """Write every tally's pending tokens and re-read active totals; returns whether storage answered every call."""
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(key: TallyKey, tally: DayTally) -> BaseException | None:
            async with gate:
                try:
                    await self._sync_tally(key, tally)
                except (AzureError, ConflictError) as exc:
                    return exc
                return None

        results = await asyncio.gather(*(one(key, tally) for key, tally in self._budgets.to_sync()))
        failures = [exc for exc in results if exc is not None]
        self._log_outcome(failures)
        return not failures

    async def _sync_tally(self, key: TallyKey, tally: DayTally) -> None:
        if not tally.pending:
            tally.end_read(await self._read(key))
            return
        delta = tally.begin_flush()
        try:
            written = await self._add(key, delta)
        except BaseException:
            tally.abort_flush()
            raise
        tally.end_flush(written)

    async def _read(self, key: TallyKey) -> Totals:
        try:
            return totals_of(await self._table.get_entity(partition_key(key), key[2]))
        except ResourceNotFoundError:
            return Totals()

    async def _add(self, key: TallyKey, delta: Mapping[int, int]) -> Totals:
        pk, rk = partition_key(key), key[2]
        for attempt in range(_MAX_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
            try:
                row = await self._table.get_entity(pk, rk)
            except ResourceNotFoundError:
                new = add_usage(Totals(), delta)
                if await _attempt(self._table.create_entity(_entity(pk, rk, new)), ResourceExistsError):
                    return new
                continue
            new = add_usage(totals_of(row), delta)
            etag = row.metadata["etag"]
            update = self._table.update_entity(_entity(pk, rk, new), etag=etag, match_condition=MatchConditions.IfNotModified)
            if await _attempt(update, ResourceModifiedError):
                return new
        raise ConflictError(f"the row {pk}/{rk} changed on each of {_MAX_ATTEMPTS} tries")

    def _log_outcome(self, failures: list[BaseException]) -> None:
        if failures and self._failing_since is None:
            self._failing_since = self._clock()
            pending = sum(sum(tally.pending.values()) for tally in self._budgets.tallies.values())
            log_event(
                log,
                logging.WARNING,
                "budget.sync_failed",
                error=type(failures[0]).__name__,
                failed_rows=len(failures),
                pending_tokens=pending,
                note="tokens are kept and written when storage answers; each instance enforces what it knows",
            )
        elif not failures and self._failing_since is not None:
            log_event(log, logging.INFO, "budget.sync_recovered", outage_s=round(self._clock() - self._failing_since, 1))
            self._failing_since = None


async def _attempt(call: Awaitable[Any], lost_race: type[Exception]) -> bool:
    """Run one conditional write; False when another instance got there first."""
    try:
        await call
    except lost_race:
        return False
    return True


def _entity(pk: str, rk: str, totals: Totals) -> dict[str, Any]:
    # Counts are Edm.Int64 whatever their size: the SDK would write a small int as Edm.Int32, which a limit up to
    # 10^12 outgrows. Minute (minutes since 1970) fits in 32 bits until the year 6053.
    return {
        "PartitionKey": pk,
        "RowKey": rk,
        "Tokens": EntityProperty(totals.day_tokens, EdmType.INT64),
        "Minute": totals.minute,
        "MinuteTokens": EntityProperty(totals.minute_tokens, EdmType.INT64),
    }
