"""Test helpers for shared.budget."""

from __future__ import annotations

from shared.budget import Budgets, minute_of


def count_tokens(budgets: Budgets, oid: str, tenant: str, tokens: int) -> None:
    """Tokens this instance counted for the caller outside any reservation (the relay always settles a reservation)."""
    now = budgets._clock()
    for tally in budgets._tallies(oid, tenant, now).values():
        tally.add(minute_of(now), tokens)
