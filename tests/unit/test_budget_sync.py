"""shared.budget_sync: instances add their counts to one row with ETags, none lost to a race or an outage."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from azure.data.tables import EdmType

from shared.budget import Budgets
from shared.budget_sync import BudgetSync
from shared.config import BudgetSettings
from shared.errors import RelayError
from tests.support.budgets import count_tokens
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
            count_tokens(budgets, OID, TID, tokens)
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
    first, first_sync = instance(table, user_tokens_per_day=16_000)
    second, second_sync = instance(table, user_tokens_per_day=16_000)
    second.settle(second.reserve(OID, TID, 1, 10), 11)  # an instance that could not read the table yet admits on its allowance
    count_tokens(first, OID, TID, 16_000)
    await first_sync.sync()
    second.reserve(OID, TID, 1, 10)
    await second_sync.sync()
    with pytest.raises(RelayError) as refused:
        second.reserve(OID, TID, 1, 10)
    assert refused.value.code == "user_quota_exceeded"


async def test_the_first_request_on_an_instance_waits_once_for_the_row_and_is_refused_if_it_is_used_up() -> None:
    table = EtagTable()
    first, first_sync = instance(table, user_tokens_per_day=16_000)
    count_tokens(first, OID, TID, 16_000)
    await first_sync.sync()
    second, second_sync = instance(table, user_tokens_per_day=16_000)
    unloaded = second.unloaded(OID, TID)
    assert [key for key, _ in unloaded] == [("user", OID, "20261127")]
    await asyncio.gather(*(second_sync.load(unloaded) for _ in range(10)))  # concurrent first requests share one read
    assert second.unloaded(OID, TID) == []  # later requests never wait
    with pytest.raises(RelayError) as refused:
        second.reserve(OID, TID, 1, 10)
    assert refused.value.headers["Retry-After"] != "10"  # used up for the day, not held
    assert second.view(OID, TID)["user_tokens_per_day"] | {"resets_at": ""} == {
        "limit": 16_000, "used": 16_000, "remaining": 0, "resets_at": "", "loaded": True
    }


async def test_a_first_request_during_an_outage_waits_once_then_is_admitted_on_the_allowance_and_me_says_not_loaded() -> None:
    table = EtagTable()
    table.down = True
    budgets, sync = instance(table, user_tokens_per_day=16_000)
    await sync.load(budgets.unloaded(OID, TID))
    assert budgets.unloaded(OID, TID) == []
    assert budgets.view(OID, TID)["user_tokens_per_day"]["loaded"] is False
    assert budgets.reserve(OID, TID, 10, 4096).output_cap == 16_000 // 16 - 10


async def test_a_row_with_32_bit_counts_is_read_and_its_counts_are_rewritten_as_64_bit_past_two_to_the_31() -> None:
    table = EtagTable()
    # As the SDK writes a Python int that fits in 32 bits: a plain Edm.Int32 property.
    await table.create_entity({"PartitionKey": f"user:{OID}", "RowKey": "20261127", "Tokens": 2**31 - 100, "Minute": 1, "MinuteTokens": 7})
    budgets, sync = instance(table, user_tokens_per_day=10**12)
    await sync.load(budgets.unloaded(OID, TID))
    assert budgets.view(OID, TID)["user_tokens_per_day"]["used"] == 2**31 - 100
    count_tokens(budgets, OID, TID, 1000)
    assert await sync.sync()
    row = table.rows[(f"user:{OID}", "20261127")][0]
    assert (row["Tokens"].value, row["Tokens"].edm_type) == (2**31 + 900, EdmType.INT64)
    assert row["MinuteTokens"].edm_type == EdmType.INT64
    count_tokens(budgets, OID, TID, 100)
    assert await sync.sync()  # and the 64-bit row, read back, is updated again
    assert table.tokens(f"user:{OID}") == 2**31 + 1000


async def test_during_an_outage_tokens_wait_and_are_written_when_storage_answers(caplog: pytest.LogCaptureFixture) -> None:
    table = EtagTable()
    budgets, sync = instance(table, user_tokens_per_day=10_000)
    count_tokens(budgets, OID, TID, 40)
    await sync.sync()
    table.down = True
    with caplog.at_level(logging.INFO, logger="relay.budget"):
        count_tokens(budgets, OID, TID, 25)
        assert await sync.sync() is False
        count_tokens(budgets, OID, TID, 35)
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
    count_tokens(budgets, OID, TID, 12)
    await sync.aclose()
    assert table.tokens(f"user:{OID}") == 12
