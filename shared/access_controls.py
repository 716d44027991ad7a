"""The block list and the token budgets as the relay's handlers use them.

Built from settings without I/O. With both controls off (the default) every method returns at
once: no table client, no task, no storage call, not even an import of the Tables SDK. With a
control on, the table client and its background task start on first use, inside the worker's
event loop (like the upstream client); the per-request checks are in-memory look-ups only
(docs/design.md, "Block list and token budgets").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.budget import Budgets, Reservation, prompt_estimate, tokens_of
from shared.caller import Caller
from shared.config import Settings
from shared.errors import (
    RelayError,
    UpstreamBroken,
    UpstreamCredentialError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
    user_blocked,
    user_concurrency_exceeded,
)
from shared.logs import log_event
from shared.open_streams import OpenStream, OpenStreams

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.blocklist import BlockEntry
    from shared.blocklist_cache import BlocklistCache
    from shared.budget_sync import BudgetSync
    from shared.table_store import TableStore

log = logging.getLogger("relay")

StoreFactory = Callable[[Settings], "TableStore"]
# Events of a stream before its first token: Azure's prompt filter results (a reasoning model then thinks).
_THINKING_EVENTS = 1


def production_store(settings: Settings) -> TableStore:
    from shared.table_store import TableStore

    return TableStore.from_settings(settings)


class TokenCharge:
    """What one admitted chat request will charge to its caller's budgets, once, freeing its slot.

    The relay charges once per request: :meth:`charge` when an answer ended (``Relay._complete``
    after a whole answer, ``ForwardedStream`` when a stream ends, however it ends),
    :meth:`failed` or :meth:`unanswered` when none reached the caller.

    Admission reserved the prompt estimate plus the output cap (:class:`shared.budget.Reservation`);
    the charge replaces that by the answer's usage, or by an estimate when the usage never came
    (docs/design.md, "Block list and token budgets": what is charged when).
    """

    def __init__(
        self,
        budgets: Budgets | None,
        reservation: Reservation | None,
        caller: Caller,
        prompt_bytes: int,
        release: Callable[[], None],
        context_tokens: int = 0,
    ) -> None:
        self._budgets = budgets
        self._reservation = reservation
        self._caller = caller
        self._prompt_bytes = prompt_bytes
        self._context_tokens = context_tokens
        self._release: Callable[[], None] | None = release

    @property
    def output_cap(self) -> int | None:
        """The output cap the budgets leave this request; None when budgets are off."""
        return self._reservation.output_cap if self._reservation is not None else None

    def charge(self, usage: Mapping[str, Any] | None, streamed_chunks: int = 0) -> None:
        """An answer ended: charge its usage; a stream that ended before it is charged an estimate.

        A stream that brought nothing but its first event (a reasoning model still thinking) is
        charged the prompt and its whole output cap: Azure bills the thinking, which the relay cannot see.
        """
        tokens = tokens_of(usage)
        if tokens is not None:
            self._charge(tokens)
        elif streamed_chunks <= _THINKING_EVENTS:
            self._estimate("stream_ended_thinking", with_output=True)
        else:
            self._estimate("stream_ended_without_usage", extra=streamed_chunks)

    def failed(self, error: BaseException) -> None:
        """Azure did not start an answer (no 2xx): charge what it may still bill.

        Nothing when the request never reached Azure (the relay's ``server_busy``, no connection,
        no credential) or Azure did not take it (429). The prompt and the whole output cap after a
        timeout, since Azure may be generating. The prompt estimate for another status from Azure
        (4xx, 5xx). Anything that is not a :class:`RelayError` (the caller hung up, a crash) is
        :meth:`unanswered`.
        """
        if not isinstance(error, RelayError):
            self.unanswered(type(error).__name__)
            return
        cause = error.cause
        never_taken = isinstance(cause, (UpstreamUnreachable, UpstreamCredentialError)) or error.code == "server_busy"
        if never_taken or (isinstance(cause, UpstreamRejected) and cause.status == 429):
            self._charge(0)
        elif isinstance(cause, (UpstreamTimeout, UpstreamBroken)):
            self._estimate(error.code, with_output=True)
        else:
            self._estimate(error.code)

    def unanswered(self, reason: str) -> None:
        """Azure may have generated an answer that never reached the caller (cut, unreadable, too slow, caller gone).

        Charged the prompt estimate and the whole output cap: Azure may have generated all of it.
        """
        self._estimate(reason, with_output=True)

    def _estimate(self, reason: str, *, with_output: bool = False, extra: int = 0) -> None:
        if self._budgets is None or self._release is None:
            self._charge(0)
            return
        tokens = prompt_estimate(self._prompt_bytes) + self._context_tokens + extra
        if with_output and self._reservation is not None:
            tokens += self._reservation.output_cap
        log_event(log, logging.INFO, "budget.usage_estimated", oid=self._caller.principal.object_id, tokens=tokens, reason=reason)
        self._charge(tokens)

    def _charge(self, tokens: int) -> None:
        if self._release is None:
            return  # charged already
        self._release()
        self._release = None
        if self._budgets is not None and self._reservation is not None:
            self._budgets.settle(self._reservation, tokens)


class AccessControls:
    def __init__(self, settings: Settings, store_factory: StoreFactory = production_store) -> None:
        self._settings = settings
        self._controls = settings.controls
        self._store_factory = store_factory
        self._store: TableStore | None = None
        self._blocklist: BlocklistCache | None = None
        self._sync: BudgetSync | None = None
        self.budgets = Budgets(self._controls.budget) if self._controls.budget.enabled else None
        self.open_streams = OpenStreams() if self._controls.blocklist.enabled else None
        self._in_flight: dict[str, int] = {}

    async def check_caller(self, caller: Caller, request_id: str) -> None:
        """Raise 403 ``user_blocked`` when the block list names the caller's object ID, tenant (a guest's home tenant too) or IP."""
        if not self._controls.blocklist.enabled:
            return
        entry = await self._blocklist_cache().lookup(*_block_keys(caller))
        if entry is None:
            return
        _log_blocked(caller, request_id, entry)
        raise user_blocked()

    def watch_stream(self, caller: Caller, request_id: str) -> OpenStream | None:
        """The entry that puts a stream of ``caller`` among the open streams a block ends; None when the block list is off."""
        return None if self.open_streams is None else self.open_streams.watch(caller, request_id)

    def _end_blocked_streams(self) -> None:
        """A new copy of the block list: end the open streams of the callers it blocks, matched as ``check_caller`` matches."""
        cache, streams = self._blocklist, self.open_streams
        assert cache is not None and streams is not None
        for stream, entry in streams.end_blocked(lambda caller: cache.match(*_block_keys(caller))):
            _log_blocked(stream.caller, stream.request_id, entry, open_stream=True)

    async def admit(self, caller: Caller, prompt_bytes: int, output_cap: int, context_tokens: int = 0) -> TokenCharge:
        """Admit one chat request, or raise 429 (``user_concurrency_exceeded``, ``user_quota_exceeded``).

        With budgets on, reserve the prompt estimate and an output cap against every window
        (``TokenCharge.output_cap``, at most ``output_cap``). The first request of a caller on this
        instance waits once for their rows; no other storage call is on the way. ``context_tokens``: the
        stored context a Responses continuation brings, which the service bills as prompt.
        """
        oid = caller.principal.object_id.lower()
        limit = self._settings.user_max_in_flight
        if self._in_flight.get(oid, 0) >= limit:
            raise user_concurrency_exceeded(limit)
        reservation = None
        if self.budgets is not None:
            await self._load_budgets(caller)
            principal = caller.principal
            prompt = prompt_estimate(prompt_bytes) + context_tokens
            reservation = self.budgets.reserve(principal.object_id, principal.tenant_id, prompt, output_cap)
        self._in_flight[oid] = self._in_flight.get(oid, 0) + 1
        return TokenCharge(self.budgets, reservation, caller, prompt_bytes, lambda: self._leave(oid), context_tokens)

    def blocklist_age_s(self) -> float | None:
        """The age of this instance's block list copy; None when the block list is off or not read yet."""
        return self._blocklist.copy_age_s() if self._blocklist is not None else None

    async def budget_view(self, caller: Caller) -> dict[str, Any] | None:
        """The caller's budgets for /api/me: limit, used, remaining, reset time and whether the shared total is loaded."""
        if self.budgets is None:
            return None
        await self._load_budgets(caller)
        return self.budgets.view(caller.principal.object_id, caller.principal.tenant_id)

    async def _load_budgets(self, caller: Caller) -> None:
        assert self.budgets is not None
        sync = self._budget_sync()
        sync.start()
        unloaded = self.budgets.unloaded(caller.principal.object_id, caller.principal.tenant_id)
        if unloaded:
            await sync.load(unloaded)

    def _leave(self, oid: str) -> None:
        left = self._in_flight[oid] - 1
        if left:
            self._in_flight[oid] = left
        else:
            del self._in_flight[oid]

    async def aclose(self) -> None:
        if self._sync is not None:
            await self._sync.aclose()
            self._sync = None
        if self._blocklist is not None:
            await self._blocklist.aclose()
            self._blocklist = None
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    def table(self, name: str) -> TableClient:
        """A table of the table service the controls use (RELAY_TABLE_ENDPOINT), on its connection pool."""
        return self._table_store().table(name)

    def _table_store(self) -> TableStore:
        if self._store is None:
            self._store = self._store_factory(self._settings)
        return self._store

    def _blocklist_cache(self) -> BlocklistCache:
        if self._blocklist is None:
            from shared.blocklist_cache import BlocklistCache

            settings = self._controls.blocklist
            self._blocklist = BlocklistCache(
                self._table_store().table(settings.table),
                settings.refresh_s,
                fail_open=settings.fail_open,
                on_refresh=self._end_blocked_streams,
            )
        return self._blocklist

    def _budget_sync(self) -> BudgetSync:
        if self._sync is None:
            from shared.budget_sync import BudgetSync

            assert self.budgets is not None
            settings = self._controls.budget
            self._sync = BudgetSync(self.budgets, self._table_store().table(settings.table), settings.flush_s)
        return self._sync


def _block_keys(caller: Caller) -> tuple[str, str, str, str | None]:
    """What the block list is matched on: the caller's object ID, tenant, IP and, for a B2B guest, home tenant."""
    principal = caller.principal
    return principal.object_id, principal.tenant_id, caller.source_ip, principal.home_tenant_id


def _log_blocked(caller: Caller, request_id: str, entry: BlockEntry, **fields: Any) -> None:
    principal = caller.principal
    matched = "home_tenant" if entry.kind == "tenant" and entry.target != principal.tenant_id.lower() else entry.kind
    log_event(
        log,
        logging.WARNING,
        "relay.blocked",
        request_id=request_id,
        oid=principal.object_id,
        tid=principal.tenant_id,
        home_tid=principal.home_tenant_id,
        source_ip=caller.source_ip,
        matched=matched,
        row=entry.row_key,
        alert_id=entry.alert_id,
        added_by=entry.added_by,
        expires_at=entry.expires_at.isoformat() if entry.expires_at else None,
        **fields,
    )
