"""shared.budget: admission against shared totals plus local counts, fixed UTC windows, Retry-After to the window's end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.budget import Budgets, DayTally, Reservation, Totals, add_usage, prompt_estimate, tokens_of
from shared.config import BudgetSettings
from shared.errors import RelayError
from tests.support.budgets import count_tokens

OID = "1b2c3d4e-0000-4000-8000-000000000003"
OTHER_OID = "99999999-0000-4000-8000-000000000009"
TID = "72f988bf-0000-4000-8000-000000000002"
# 2026-11-27 23:58:30 UTC: 30 s left in the minute, 90 s in the day.
T0 = datetime(2026, 11, 27, 23, 58, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budgets(clock: Clock, **limits: int) -> Budgets:
    return Budgets(BudgetSettings(**limits), clock)


def written(b: Budgets) -> None:
    """What a lone instance's sync does: every count goes to the table, and the table's total comes back."""
    for _, tally in list(b.to_sync()):
        delta = tally.begin_flush()
        tally.end_flush(add_usage(tally.shared, delta))


def spend(b: Budgets, tokens: int, oid: str = OID, tenant: str = TID, prompt: int = 1, cap: int = 10_000) -> Reservation:
    """One request: admitted, answered with ``tokens``, and written to the table."""
    reservation = b.reserve(oid, tenant, prompt, cap)
    b.settle(reservation, tokens)
    written(b)
    return reservation


def refused(b: Budgets, oid: str = OID, tenant: str = TID, prompt: int = 1, cap: int = 10_000) -> RelayError:
    with pytest.raises(RelayError) as caught:
        b.reserve(oid, tenant, prompt, cap)
    assert (caught.value.status, caught.value.code) == (429, "user_quota_exceeded")
    return caught.value


def test_a_user_is_admitted_until_the_day_budget_is_used_then_told_when_it_resets() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_day=1600)
    for _ in range(15):
        spend(b, 99)
    spend(b, 120)
    error = refused(b)
    assert error.headers["Retry-After"] == "90"
    assert "day (UTC)" in error.message
    spend(b, 5, OTHER_OID)
    clock.now += 90
    spend(b, 5)


def test_the_minute_budget_resets_with_the_minute_and_the_longer_wait_wins() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_minute=50, user_tokens_per_day=1280)
    count_tokens(b, OID, TID, 50)
    written(b)
    assert refused(b).headers["Retry-After"] == "30"
    clock.now += 30
    spend(b, 40)
    count_tokens(b, OID, TID, 1190)
    written(b)
    assert refused(b).headers["Retry-After"] == "60"  # the day is also used up: wait for midnight, not the next minute


def test_a_tenant_budget_is_shared_by_its_users() -> None:
    b = budgets(Clock(), tenant_tokens_per_day=1600)
    for _ in range(10):
        spend(b, 60)
        spend(b, 100, OTHER_OID, TID.upper())
    error = refused(b, OTHER_OID)
    assert "tenant" in error.message
    spend(b, 5, OID, "0badf00d-0000-4000-8000-000000000009")


def test_shared_totals_count_with_what_this_instance_has_not_written_yet() -> None:
    b = budgets(Clock(), user_tokens_per_day=1600)
    b.settle(b.reserve(OID, TID, 1, 1), 0)
    [(key, tally)] = list(b.to_sync())
    assert key == ("user", OID, "20261127")
    tally.shared = Totals(day_tokens=1520)
    count_tokens(b, OID, TID, 20)
    b.settle(b.reserve(OID, TID, 1, 1), 1)
    tally.begin_flush()
    count_tokens(b, OID, TID, 57)
    b.reserve(OID, TID, 1, 1)
    refused(b)  # 1520 shared + 21 being written + 57 counted + 2 reserved


def test_a_burst_reserves_what_each_request_may_cost_and_the_caps_share_what_is_left() -> None:
    b = budgets(Clock(), user_tokens_per_day=2000)
    b.tallies[("user", OID, "20261127")] = DayTally(loaded=True)
    granted = []
    for _ in range(25):
        try:
            granted.append(b.reserve(OID, TID, 30, 4096))
        except RelayError as error:
            assert error.code == "user_quota_exceeded"
            assert int(error.headers["Retry-After"]) <= 10  # only held: retry soon, not at midnight
    assert [r.output_cap for r in granted] == [2000 // 16 - 30]  # one instance may hold 1/16 of the limit unwritten
    written(b)  # the reservation reaches the table; the next request may hold another share
    granted.append(b.reserve(OID, TID, 30, 4096))
    assert sum(r.tokens for r in granted) == 2 * (2000 // 16)
    for r in granted:
        b.settle(r, r.tokens)  # every answer used its whole cap
    written(b)
    while True:
        try:
            r = b.reserve(OID, TID, 30, 4096)
        except RelayError as error:
            assert error.headers["Retry-After"] == "90"  # used up: midnight
            break
        b.settle(r, r.tokens)
        written(b)
    assert b.view(OID, TID)["user_tokens_per_day"]["used"] == 2000  # the last answer was cut to what was left


def test_a_settled_answer_frees_the_rest_of_its_reservation_and_a_prompt_larger_than_what_is_left_is_refused() -> None:
    b = budgets(Clock(), user_tokens_per_day=160_000)
    r = b.reserve(OID, TID, 100, 4096)
    assert (r.tokens, r.output_cap) == (4196, 4096)
    assert b.view(OID, TID)["user_tokens_per_day"]["used"] == 4196
    b.settle(r, 150)
    b.settle(r, 150)  # once only
    assert b.view(OID, TID)["user_tokens_per_day"]["used"] == 150
    written(b)
    count_tokens(b, OID, TID, 159_000)
    written(b)
    error = refused(b, prompt=900)  # 850 left: not even the prompt fits
    assert error.headers["Retry-After"] == "90"
    assert b.reserve(OID, TID, 800, 4096).output_cap == 50


def test_without_the_table_an_instance_holds_at_most_its_allowance_of_a_day_budget_but_not_of_a_minute_one() -> None:
    b = budgets(Clock(), user_tokens_per_day=16_000, user_tokens_per_minute=16_000)
    held = []
    with pytest.raises(RelayError) as caught:
        while True:
            held.append(b.reserve(OID, TID, 10, 300))
    assert sum(r.tokens for r in held) <= 16_000 // 16
    assert caught.value.headers["Retry-After"] == "10"  # about one sync: 2 x RELAY_BUDGET_FLUSH_S
    minute_only = budgets(Clock(), user_tokens_per_minute=16_000)
    assert sum(minute_only.reserve(OID, TID, 10, 300).tokens for _ in range(50)) == 15_500


def test_the_view_shows_limit_use_remainder_and_reset_time() -> None:
    b = budgets(Clock(), user_tokens_per_minute=50, tenant_tokens_per_day=1000)
    count_tokens(b, OID, TID, 60)
    assert b.view(OID, TID) == {
        "user_tokens_per_minute": {"limit": 50, "used": 60, "remaining": 0, "resets_at": "2026-11-27T23:59:00Z", "loaded": False},
        "tenant_tokens_per_day": {"limit": 1000, "used": 60, "remaining": 940, "resets_at": "2026-11-28T00:00:00Z", "loaded": False},
    }
    written(b)
    assert [window["loaded"] for window in b.view(OID, TID).values()] == [True, True]


def test_counters_of_past_days_are_dropped_once_written() -> None:
    clock = Clock()
    b = budgets(clock, user_tokens_per_day=100)
    count_tokens(b, OID, TID, 5)
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
        (Totals(500, 100, 450), {100: -400}, Totals(100, 100, 50)),  # a reservation's unused part comes back
    ],
)
def test_adding_usage_to_a_row(row: Totals, delta: dict[int, int], expected: Totals) -> None:
    assert add_usage(row, delta) == expected


def test_tokens_come_from_usage_or_an_estimate() -> None:
    assert tokens_of({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}) == 21
    assert tokens_of({"prompt_tokens": 9, "completion_tokens": 12}) == 21
    assert tokens_of({"total_tokens": "21"}) is None
    assert tokens_of(None) is None
    assert prompt_estimate(prompt_bytes=401) == 101
