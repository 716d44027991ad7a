"""shared.budget_sync: instances add their counts to one row with ETags, none lost to a race or an outage."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from shared.budget import Budgets
from shared.budget_sync import BudgetSync
from shared.config import BudgetSettings
from shared.errors import RelayError
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.tables import EtagTable

T0 = 1_795_780_000.0  # 2026-11-27, mid-day UTC


def instance(table: EtagTable, **limits: int) -> tuple[Budgets, BudgetSync]:
    budgets = Budgets(BudgetSettings(**limits), clock=lambda: T0)
    return budgets, BudgetSync(budgets, table, flush_s=3600)


async def test_three_instances_writing_the_same_rows_at_once_lose_nothing() -> None:
    table = EtagTable()
    instances = [instance(table, user_tokens_per_day=10**9, tenant_tokens_per_day=10**9) for _ in range(3)]
    charged = 0
    for round_ in range(5):
        for i, (budgets, _) in enumerate(instances):
            tokens = 10 * (round_ + 1) + i
            budgets.charge(OID, TID, tokens)
            charged += tokens
        results = await asyncio.gather(*(sync.sync() for _, sync in instances))
        assert all(results)
    assert table.lost_races > 0, "the syncs never raced: this test would not catch a lost update"
    assert table.tokens(f"user:{OID}") == charged
    assert table.tokens(f"tenant:{TID}") == charged
    await asyncio.gather(*(sync.sync() for _, sync in instances))  # the ones that wrote first read the others' share
    assert all(budgets.view(OID, TID)["user_tokens_per_day"]["used"] == charged for budgets, _ in instances)


async def test_an_instance_learns_what_the_others_spent_on_its_next_sync() -> None:
    table = EtagTable()
    first, first_sync = instance(table, user_tokens_per_day=1000)
    second, second_sync = instance(table, user_tokens_per_day=1000)
    second.admit(OID, TID)  # a new instance knows nothing yet, and admits
    first.charge(OID, TID, 1000)
    await first_sync.sync()
    second.admit(OID, TID)
    await second_sync.sync()
    with pytest.raises(RelayError) as refused:
        second.admit(OID, TID)
    assert refused.value.code == "user_quota_exceeded"


async def test_during_an_outage_tokens_wait_and_are_written_when_storage_answers(caplog: pytest.LogCaptureFixture) -> None:
    table = EtagTable()
    budgets, sync = instance(table, user_tokens_per_day=10_000)
    budgets.charge(OID, TID, 40)
    await sync.sync()
    table.down = True
    with caplog.at_level(logging.INFO, logger="relay.budget"):
        budgets.charge(OID, TID, 25)
        assert await sync.sync() is False
        budgets.charge(OID, TID, 35)
        assert await sync.sync() is False
        assert budgets.view(OID, TID)["user_tokens_per_day"]["used"] == 100
        table.down = False
        assert await sync.sync() is True
    assert table.tokens(f"user:{OID}") == 100
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.budget"]
    assert [line["event"] for line in logged] == ["budget.sync_failed", "budget.sync_recovered"]
    assert logged[0]["pending_tokens"] == 25 and logged[0]["error"] == "ServiceRequestError"


async def test_closing_writes_what_is_pending() -> None:
    table = EtagTable()
    budgets, sync = instance(table, user_tokens_per_day=10_000)
    sync.start()
    budgets.charge(OID, TID, 12)
    await sync.aclose()
    assert table.tokens(f"user:{OID}") == 12
