"""shared.budget: admission against shared totals plus local counts, fixed UTC windows, Retry-After to the window's end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.budget import Budgets, DayTally, Totals, add_usage, estimated_tokens, tokens_of
from shared.config import BudgetSettings
from shared.errors import RelayError
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.identities import OTHER_OID

# 2026-11-27 23:58:30 UTC: 30 s left in the minute, 90 s in the day.
T0 = datetime(2026, 11, 27, 23, 58, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budgets(clock: Clock, **limits: int) -> Budgets:
    return Budgets(BudgetSettings(**limits), clock)


def refused(b: Budgets, oid: str = OID, tenant: str = TID) -> RelayError:
    with pytest.raises(RelayError) as caught:
        b.admit(oid, tenant)
    assert (caught.value.status, caught.value.code) == (429, "user_quota_exceeded")
    return caught.value


def test_a_user_is_admitted_until_the_day_budget_is_used_then_told_when_it_resets() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_day=100)
    b.admit(OID, TID)
    b.charge(OID, TID, 99)
    b.admit(OID, TID)
    b.charge(OID, TID, 30)
    error = refused(b)
    assert error.headers["Retry-After"] == "90"
    assert "day (UTC)" in error.message
    b.admit(OTHER_OID, TID)
    clock.now += 90
    b.admit(OID, TID)


def test_the_minute_budget_resets_with_the_minute_and_the_longer_wait_wins() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_minute=50, user_tokens_per_day=80)
    b.charge(OID, TID, 50)
    assert refused(b).headers["Retry-After"] == "30"
    clock.now += 30
    b.admit(OID, TID)
    b.charge(OID, TID, 30)
    assert refused(b).headers["Retry-After"] == "60"  # the day is also used up: wait for midnight, not the next minute


def test_a_tenant_budget_is_shared_by_its_users() -> None:
    b = budgets(Clock(), tenant_tokens_per_day=100)
    b.charge(OID, TID, 60)
    b.charge(OTHER_OID, TID.upper(), 40)
    error = refused(b, OTHER_OID)
    assert "tenant" in error.message
    b.admit(OID, "0badf00d-0000-4000-8000-000000000009")


def test_shared_totals_count_with_what_this_instance_has_not_written_yet() -> None:
    b = budgets(Clock(), user_tokens_per_day=100)
    b.admit(OID, TID)
    [(key, tally)] = list(b.to_sync())
    assert key == ("user", OID, "20261127")
    tally.shared = Totals(day_tokens=70)
    b.charge(OID, TID, 20)
    b.admit(OID, TID)
    tally.begin_flush()
    b.charge(OID, TID, 10)
    refused(b)  # 70 shared + 20 being written + 10 counted


def test_the_view_shows_limit_use_remainder_and_reset_time() -> None:
    b = budgets(Clock(), user_tokens_per_minute=50, tenant_tokens_per_day=1000)
    b.charge(OID, TID, 60)
    assert b.view(OID, TID) == {
        "user_tokens_per_minute": {"limit": 50, "used": 60, "remaining": 0, "resets_at": "2026-11-27T23:59:00Z"},
        "tenant_tokens_per_day": {"limit": 1000, "used": 60, "remaining": 940, "resets_at": "2026-11-28T00:00:00Z"},
    }


def test_counters_of_past_days_are_dropped_once_written() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_day=100)
    b.charge(OID, TID, 5)
    clock.now += 3600
    assert [key for key, _ in b.to_sync()] == [("user", OID, "20261127")]  # yesterday's tokens still to write
    [(_, tally)] = list(b.to_sync())
    tally.begin_flush()
    tally.end_flush(Totals(5))
    assert list(b.to_sync()) == []
    assert b.tallies == {}


def test_a_failed_write_puts_the_tokens_back() -> None:
    tally = DayTally()
    tally.pending = {100: 5, 101: 7}
    assert tally.begin_flush() == {100: 5, 101: 7}
    tally.pending[101] = 1
    tally.abort_flush()
    assert (tally.pending, tally.flushing, tally.day_used()) == ({100: 5, 101: 8}, {}, 13)


@pytest.mark.parametrize(
    ("row", "delta", "expected"),
    [
        (Totals(), {100: 5}, Totals(5, 100, 5)),
        (Totals(50, 100, 20), {100: 5}, Totals(55, 100, 25)),
        (Totals(50, 100, 20), {100: 5, 101: 7}, Totals(62, 101, 7)),
        (Totals(50, 102, 20), {101: 7}, Totals(57, 102, 20)),  # another instance already counts a later minute
    ],
)
def test_adding_usage_to_a_row(row: Totals, delta: dict[int, int], expected: Totals) -> None:
    assert add_usage(row, delta) == expected


def test_tokens_come_from_usage_or_an_estimate() -> None:
    assert tokens_of({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}) == 21
    assert tokens_of({"prompt_tokens": 9, "completion_tokens": 12}) == 21
    assert tokens_of({"total_tokens": "21"}) is None
    assert tokens_of(None) is None
    assert estimated_tokens(prompt_bytes=401, streamed_chunks=7) == 108
