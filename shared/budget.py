"""Token budgets: per user per minute and per day, per tenant per day, shared by every instance.

Pure accounting, no I/O: every instance counts tokens in :class:`DayTally` objects, one per
subject (user or tenant) and UTC day. Admission reserves what the request may still cost (its
prompt estimate plus its output cap, the cap lowered to what is left) and counts the reservation
as spent; the answer's real usage replaces it. :mod:`shared.budget_sync` writes the counts,
reservations included, to the table and reads the totals back, so every instance sees what the
others hold. A day window lets an instance hold at most ``1/ALLOWANCE_DIVISOR`` of the limit
that the table does not have yet. Windows are fixed and UTC: a minute starts at :00, a day at
00:00. Over budget is a 429 ``user_quota_exceeded`` (docs/design.md, "Block list and token
budgets", for the bounds).
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
# A prompt's tokens before Azure says: one per four bytes of the caller's body, for the reservation and for the
# charge when Azure's usage never arrived (docs/design.md says what is charged when).
PROMPT_BYTES_PER_TOKEN = 4
# A day window: what an instance may hold beyond what the table has (not written yet, or written while the
# table was unreachable) is at most limit / ALLOWANCE_DIVISOR; I instances bursting together then spend at most
# limit x (1 + 2 (I - 1) / ALLOWANCE_DIVISOR), 1.25 x the limit for three (docs/design.md).
ALLOWANCE_DIVISOR = 16
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
    # Tokens reserved by this instance's requests in flight (counted in pending until written).
    reserved: int = 0
    # The table's row has been read or written: ``shared`` is what the table said, not an empty guess.
    loaded: bool = False
    # The first request waited for the row once (successfully or not); later ones never wait.
    load_tried: bool = False

    def day_used(self) -> int:
        return self.shared.day_tokens + sum(self.pending.values()) + sum(self.flushing.values())

    def minute_used(self, minute: int) -> int:
        shared = self.shared.minute_tokens if self.shared.minute == minute else 0
        return shared + self.pending.get(minute, 0) + self.flushing.get(minute, 0)

    def unshared(self) -> int:
        """Tokens counted or reserved here that the table does not have yet."""
        return max(0, sum(self.pending.values()) + sum(self.flushing.values()))

    def add(self, minute: int, tokens: int) -> None:
        left = self.pending.get(minute, 0) + tokens
        if left:
            self.pending[minute] = left
        else:
            self.pending.pop(minute, None)

    def begin_flush(self) -> dict[int, int]:
        """Move what was counted here into ``flushing`` and return it (minute -> tokens)."""
        self.flushing, self.pending = self.pending, {}
        return self.flushing

    def end_flush(self, written: Totals) -> None:
        self.shared = written
        self.flushing = {}
        self.loaded = True

    def end_read(self, read: Totals) -> None:
        self.shared = read
        self.loaded = True

    def abort_flush(self) -> None:
        """The write failed: the tokens go back to ``pending`` for the next sync, nothing is lost."""
        for minute, tokens in self.flushing.items():
            self.add(minute, tokens)
        self.flushing = {}


def add_usage(row: Totals, delta: Mapping[int, int]) -> Totals:
    """The row after adding ``delta`` (minute -> tokens): every token counts for the day, the latest minute for the minute."""
    if not delta:
        return row
    latest = max(delta)
    # A refund (a reservation larger than the answer's usage) is negative; a row never goes below zero.
    day = max(0, row.day_tokens + sum(delta.values()))
    if latest > row.minute:
        return Totals(day, latest, max(0, delta[latest]))
    if latest == row.minute:
        return Totals(day, row.minute, max(0, row.minute_tokens + delta[latest]))
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


def prompt_estimate(prompt_bytes: int) -> int:
    """The tokens a prompt of this many bytes is taken to cost before Azure says (a token per four bytes)."""
    return math.ceil(prompt_bytes / PROMPT_BYTES_PER_TOKEN)


@dataclass(frozen=True)
class Window:
    name: str  # as /api/me and the 429 message name it
    subject: Subject
    limit: int
    per_minute: bool

    @property
    def allowance(self) -> int | None:
        """What an instance may hold that the table does not have: a day window's share; None for a minute window."""
        return None if self.per_minute else max(1, self.limit // ALLOWANCE_DIVISOR)


@dataclass
class Reservation:
    """What admission set aside for one request: ``tokens`` (prompt estimate + ``output_cap``) in each tally."""

    tallies: tuple[DayTally, ...]
    minute: int
    tokens: int
    output_cap: int
    settled: bool = False


class Budgets:
    def __init__(self, settings: BudgetSettings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # A refusal while the budget is only held (by requests in flight, or counts the table has not confirmed):
        # retry after about one sync.
        self._held_retry_s = max(1, math.ceil(2 * settings.flush_s))
        windows = [
            Window("user_tokens_per_minute", "user", settings.user_tokens_per_minute, per_minute=True),
            Window("user_tokens_per_day", "user", settings.user_tokens_per_day, per_minute=False),
            Window("tenant_tokens_per_day", "tenant", settings.tenant_tokens_per_day, per_minute=False),
        ]
        self.windows = tuple(window for window in windows if window.limit > 0)
        self._subjects = frozenset(window.subject for window in self.windows)
        self.tallies: dict[TallyKey, DayTally] = {}

    def reserve(self, oid: str, tenant: str, prompt_tokens: int, output_cap: int) -> Reservation:
        """Set aside the prompt estimate and an output cap (at most ``output_cap``) that fit every window, or raise 429.

        The cap is lowered to what is left of the tightest window, so that an answer at the end of a
        budget is cut (``finish_reason: length``) instead of served whole. Refused when not even the
        prompt and one token of answer fit.
        """
        now = self._clock()
        tallies = self._tallies(oid, tenant, now)
        minute = minute_of(now)
        room = output_cap + prompt_tokens
        spent: list[tuple[Window, float]] = []
        for window, used, end in self._usage(oid, tenant, now):
            tally = tallies[window.subject]
            room = min(room, window.limit - used)
            if window.limit - (used - tally.reserved) < prompt_tokens + 1:
                spent.append((window, end))  # used up by answers, not only held by requests in flight
            allowance = window.allowance
            if allowance is not None:
                room = min(room, allowance - tally.unshared())
        if room - prompt_tokens < 1:
            if spent:
                window, end = max(spent, key=lambda item: item[1])
                raise user_quota_exceeded(per_minute=window.per_minute, tenant=window.subject == "tenant", retry_after_s=end - now)
            raise user_quota_exceeded(per_minute=False, tenant=False, retry_after_s=self._held_retry_s, held=True)
        cap = min(output_cap, room - prompt_tokens)
        reservation = Reservation(tuple(tallies.values()), minute, prompt_tokens + cap, cap)
        for tally in reservation.tallies:
            tally.add(minute, reservation.tokens)
            tally.reserved += reservation.tokens
        return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """Replace a reservation by the tokens the answer cost (0 when Azure billed nothing); once."""
        if reservation.settled:
            return
        reservation.settled = True
        for tally in reservation.tallies:
            tally.add(reservation.minute, tokens - reservation.tokens)
            tally.reserved -= reservation.tokens
            tally.last_used = self._clock()

    def unloaded(self, oid: str, tenant: str) -> list[tuple[TallyKey, DayTally]]:
        """This caller's tallies whose row was never read and never waited for: the first request waits for them."""
        now = self._clock()
        day = day_of(now)
        tallies = self._tallies(oid, tenant, now)
        keys = {subject: self._key(subject, oid, tenant, day) for subject in tallies}
        return [(keys[subject], tally) for subject, tally in tallies.items() if not tally.loaded and not tally.load_tried]

    def view(self, oid: str, tenant: str) -> dict[str, dict[str, Any]]:
        """What /api/me shows: each window's limit, use, remainder and end."""
        now = self._clock()
        tallies = self._tallies(oid, tenant, now)
        return {
            window.name: {
                "limit": window.limit,
                "used": max(0, used),
                "remaining": max(0, window.limit - used),
                "resets_at": datetime.fromtimestamp(end, UTC).isoformat().replace("+00:00", "Z"),
                # False: this instance could not read the shared total yet; "used" is only what it counted itself.
                "loaded": tallies[window.subject].loaded,
            }
            for window, used, end in self._usage(oid, tenant, now)
        }

    def to_sync(self) -> Iterator[tuple[TallyKey, DayTally]]:
        """Tallies with tokens to write or a total worth re-reading; drops those of past days with nothing left to write."""
        now = self._clock()
        today = day_of(now)
        for key, tally in list(self.tallies.items()):
            active = tally.reserved or not tally.loaded or now - tally.last_used < ACTIVE_S
            if tally.pending or tally.flushing or (key[2] == today and active):
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
            key = self._key(subject, oid, tenant, day)
            tally = self.tallies.get(key)
            if tally is None:
                tally = self.tallies[key] = DayTally()
            tally.last_used = now
            found[subject] = tally
        return found


    @staticmethod
    def _key(subject: Subject, oid: str, tenant: str, day: str) -> TallyKey:
        return (subject, (tenant if subject == "tenant" else oid).lower(), day)


def _end_of_day(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp()
