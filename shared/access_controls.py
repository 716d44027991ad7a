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

from shared.budget import Budgets, estimated_tokens, tokens_of
from shared.caller import Caller
from shared.config import Settings
from shared.errors import user_blocked
from shared.logs import log_event

if TYPE_CHECKING:
    from shared.blocklist_cache import BlocklistCache
    from shared.budget_sync import BudgetSync
    from shared.table_store import TableStore

log = logging.getLogger("relay")

StoreFactory = Callable[[Settings], "TableStore"]


def production_store(settings: Settings) -> TableStore:
    from shared.table_store import TableStore

    return TableStore.from_settings(settings)


class TokenCharge:
    """What one admitted request will charge to its caller's budgets; :meth:`charge` does it once the answer's usage is known.

    The relay calls ``charge`` once per answer: ``Relay._complete`` after a whole answer was
    read, ``ForwardedStream`` when a stream ends, however it ends (docs/design.md, "Block list
    and token budgets").
    """

    def __init__(self, budgets: Budgets | None, caller: Caller, prompt_bytes: int) -> None:
        self._budgets = budgets
        self._caller = caller
        self._prompt_bytes = prompt_bytes

    def charge(self, usage: Mapping[str, Any] | None, streamed_chunks: int = 0) -> None:
        """Charge Azure's ``usage``, or an estimate from the prompt's size and the chunks streamed when it never came."""
        if self._budgets is None:
            return
        tokens = tokens_of(usage)
        if tokens is None:
            tokens = estimated_tokens(self._prompt_bytes, streamed_chunks)
            log_event(log, logging.INFO, "budget.usage_estimated", oid=self._caller.principal.object_id, tokens=tokens)
        self._budgets.charge(self._caller.principal.object_id, self._caller.principal.tenant_id, tokens)


class AccessControls:
    def __init__(self, settings: Settings, store_factory: StoreFactory = production_store) -> None:
        self._settings = settings
        self._controls = settings.controls
        self._store_factory = store_factory
        self._store: TableStore | None = None
        self._blocklist: BlocklistCache | None = None
        self._sync: BudgetSync | None = None
        self.budgets = Budgets(self._controls.budget) if self._controls.budget.enabled else None

    async def check_caller(self, caller: Caller, request_id: str) -> None:
        """Raise 403 ``user_blocked`` when the block list names the caller's object ID, tenant or IP."""
        if not self._controls.blocklist.enabled:
            return
        principal = caller.principal
        entry = await self._blocklist_cache().lookup(principal.object_id, principal.tenant_id, caller.source_ip)
        if entry is None:
            return
        log_event(
            log,
            logging.WARNING,
            "relay.blocked",
            request_id=request_id,
            oid=principal.object_id,
            tid=principal.tenant_id,
            source_ip=caller.source_ip,
            matched=entry.kind,
            row=entry.row_key,
            alert_id=entry.alert_id,
            added_by=entry.added_by,
            expires_at=entry.expires_at.isoformat() if entry.expires_at else None,
        )
        raise user_blocked()

    def admit(self, caller: Caller, prompt_bytes: int) -> TokenCharge:
        """Raise 429 ``user_quota_exceeded`` when a budget of the caller is used up; else the charge for its answer, not yet made."""
        if self.budgets is not None:
            self._budget_sync().start()
            self.budgets.admit(caller.principal.object_id, caller.principal.tenant_id)
        return TokenCharge(self.budgets, caller, prompt_bytes)

    def blocklist_age_s(self) -> float | None:
        """The age of this instance's block list copy; None when the block list is off or not read yet."""
        return self._blocklist.copy_age_s() if self._blocklist is not None else None

    def budget_view(self, caller: Caller) -> dict[str, Any] | None:
        """The caller's budgets for /api/me: limit, used, remaining and reset time of each; None when budgets are off."""
        if self.budgets is None:
            return None
        return self.budgets.view(caller.principal.object_id, caller.principal.tenant_id)

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

    def _table_store(self) -> TableStore:
        if self._store is None:
            self._store = self._store_factory(self._settings)
        return self._store

    def _blocklist_cache(self) -> BlocklistCache:
        if self._blocklist is None:
            from shared.blocklist_cache import BlocklistCache

            settings = self._controls.blocklist
            self._blocklist = BlocklistCache(
                self._table_store().table(settings.table), settings.refresh_s, fail_open=settings.fail_open
            )
        return self._blocklist

    def _budget_sync(self) -> BudgetSync:
        if self._sync is None:
            from shared.budget_sync import BudgetSync

            assert self.budgets is not None
            settings = self._controls.budget
            self._sync = BudgetSync(self.budgets, self._table_store().table(settings.table), settings.flush_s)
        return self._sync
