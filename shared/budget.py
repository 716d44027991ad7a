"""Token budgets: per user per minute and per day, per tenant per day, shared by every instance.

Pure accounting, no I/O: every instance counts the tokens Azure OpenAI reports (``usage``) in
:class:`DayTally` objects, one per subject (user or tenant) and UTC day, and admits a request
while the table's total as last seen plus what it counted since (not yet written) is under the
limit. :mod:`shared.budget_sync` writes those counts to the table and reads the totals back.
Windows are fixed and UTC: a minute starts at :00, a day at 00:00. Over budget is a 429
``user_quota_exceeded`` whose ``Retry-After`` is the end of the window (docs/design.md,
"Block list and token budgets", also for the overshoot bound).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.config import BudgetSettings
from shared.errors import user_quota_exceeded

# Whom a budget counts: one user (by object ID) or one tenant.
Subject = Literal["user", "tenant"]
# A subject's tally for one day: ("user", oid, "20261127").
TallyKey = tuple[Subject, str, str]
# Tokens charged when Azure's usage never arrived (the caller hung up mid-stream): about four bytes of prompt per
# token, plus one token per streamed chunk, so leaving before the usage chunk is not a way around the budget.
PROMPT_BYTES_PER_TOKEN = 4
# Tallies not used for this long are no longer re-read every sync; they are kept until their day ends.
ACTIVE_S = 600.0


@dataclass(frozen=True)
class Totals:
    """A subject's row in the table: the day's tokens, and the tokens of its latest minute."""

    day_tokens: int = 0
    minute: int = -1
    minute_tokens: int = 0


@dataclass
class DayTally:
    """One subject's tokens for one UTC day, as this instance knows them."""

    shared: Totals = Totals()
    pending: dict[int, int] = field(default_factory=dict)  # minute -> tokens counted here, not written yet
    flushing: dict[int, int] = field(default_factory=dict)  # minute -> tokens being written now
    last_used: float = 0.0

    def day_used(self) -> int:
        return self.shared.day_tokens + sum(self.pending.values()) + sum(self.flushing.values())

    def minute_used(self, minute: int) -> int:
        shared = self.shared.minute_tokens if self.shared.minute == minute else 0
        return shared + self.pending.get(minute, 0) + self.flushing.get(minute, 0)

    def begin_flush(self) -> dict[int, int]:
        """Move what was counted here into ``flushing`` and return it (minute -> tokens)."""
        self.flushing, self.pending = self.pending, {}
        return self.flushing

    def end_flush(self, written: Totals) -> None:
        self.shared = written
        self.flushing = {}

    def abort_flush(self) -> None:
        """The write failed: the tokens go back to ``pending`` for the next sync, nothing is lost."""
        for minute, tokens in self.flushing.items():
            self.pending[minute] = self.pending.get(minute, 0) + tokens
        self.flushing = {}


def add_usage(row: Totals, delta: Mapping[int, int]) -> Totals:
    """The row after adding ``delta`` (minute -> tokens): every token counts for the day, the latest minute for the minute."""
    if not delta:
        return row
    latest = max(delta)
    day = row.day_tokens + sum(delta.values())
    if latest > row.minute:
        return Totals(day, latest, delta[latest])
    if latest == row.minute:
        return Totals(day, row.minute, row.minute_tokens + delta[latest])
    return Totals(day, row.minute, row.minute_tokens)


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")


def minute_of(now: float) -> int:
    return int(now // 60)


def tokens_of(usage: Mapping[str, Any] | None) -> int | None:
    """The tokens Azure OpenAI billed for an answer, from its ``usage``; None when it did not say."""
    if not usage:
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if all(isinstance(part, int) and part >= 0 for part in parts):
        return sum(parts)  # type: ignore[arg-type]
    return None


def estimated_tokens(prompt_bytes: int, streamed_chunks: int) -> int:
    return math.ceil(prompt_bytes / PROMPT_BYTES_PER_TOKEN) + streamed_chunks


@dataclass(frozen=True)
class Window:
    name: str  # as /api/me and the 429 message name it
    subject: Subject
    limit: int
    per_minute: bool


class Budgets:
    def __init__(self, settings: BudgetSettings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        windows = [
            Window("user_tokens_per_minute", "user", settings.user_tokens_per_minute, per_minute=True),
            Window("user_tokens_per_day", "user", settings.user_tokens_per_day, per_minute=False),
            Window("tenant_tokens_per_day", "tenant", settings.tenant_tokens_per_day, per_minute=False),
        ]
        self.windows = tuple(window for window in windows if window.limit > 0)
        self._subjects = frozenset(window.subject for window in self.windows)
        self.tallies: dict[TallyKey, DayTally] = {}

    def admit(self, oid: str, tenant: str) -> None:
        """Raise 429 ``user_quota_exceeded`` when a window of this caller is used up; otherwise mark the caller active."""
        now = self._clock()
        spent = [(window, end) for window, used, end in self._usage(oid, tenant, now) if used >= window.limit]
        if spent:
            window, end = max(spent, key=lambda item: item[1])
            raise user_quota_exceeded(per_minute=window.per_minute, tenant=window.subject == "tenant", retry_after_s=end - now)

    def charge(self, oid: str, tenant: str, tokens: int) -> None:
        now = self._clock()
        minute = minute_of(now)
        for tally in self._tallies(oid, tenant, now).values():
            tally.pending[minute] = tally.pending.get(minute, 0) + tokens

    def view(self, oid: str, tenant: str) -> dict[str, dict[str, Any]]:
        """What /api/me shows: each window's limit, use, remainder and end."""
        now = self._clock()
        return {
            window.name: {
                "limit": window.limit,
                "used": used,
                "remaining": max(0, window.limit - used),
                "resets_at": datetime.fromtimestamp(end, UTC).isoformat().replace("+00:00", "Z"),
            }
            for window, used, end in self._usage(oid, tenant, now)
        }

    def to_sync(self) -> Iterator[tuple[TallyKey, DayTally]]:
        """Tallies with tokens to write or a total worth re-reading; drops those of past days with nothing left to write."""
        now = self._clock()
        today = day_of(now)
        for key, tally in list(self.tallies.items()):
            if tally.pending or tally.flushing or (key[2] == today and now - tally.last_used < ACTIVE_S):
                yield key, tally
            elif key[2] != today:
                del self.tallies[key]

    def _usage(self, oid: str, tenant: str, now: float) -> Iterator[tuple[Window, int, float]]:
        tallies = self._tallies(oid, tenant, now)
        minute = minute_of(now)
        for window in self.windows:
            tally = tallies[window.subject]
            if window.per_minute:
                yield window, tally.minute_used(minute), (minute + 1) * 60.0
            else:
                yield window, tally.day_used(), _end_of_day(now)

    def _tallies(self, oid: str, tenant: str, now: float) -> dict[Subject, DayTally]:
        """This caller's tallies for today, one per subject a window uses, created on first use."""
        day = day_of(now)
        found: dict[Subject, DayTally] = {}
        for subject in self._subjects:
            key: TallyKey = (subject, (tenant if subject == "tenant" else oid).lower(), day)
            tally = self.tallies.get(key)
            if tally is None:
                tally = self.tallies[key] = DayTally()
            tally.last_used = now
            found[subject] = tally
        return found


def _end_of_day(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()
