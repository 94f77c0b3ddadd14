"""Sending to the public within carriers' and providers' limits. Pure, no I/O.

Providers refuse what exceeds a number's budget (Tencent Cloud SMS: the same text to the same
number within 30 s, more than 10 messages per number per day by default; Alibaba Cloud: 50
per 24 h per signature + template + number). A storm with overlapping warnings must plan
within these budgets instead of discovering them as failures, so every public message is
*booked* against its number before it is written to the outbox:

- `Booking`s are what a number already has in the window: every SMS sent or planned to it,
  officials' traffic included (it counts against the same carrier budget). A pending public
  message not yet handed to the provider is *movable*: a more urgent warning may drop it.
- `plan_number` books one more message: at `now` when the budget allows, else at the earliest
  time it does (deferred: a same-text interval or a day's cap that frees up), else never
  (over budget: no time before `not_after` works). A request displaces movable bookings of a
  strictly lower rank (a lower 631 step) before it accepts a delay: an imminent warning always
  goes first, and a lower step is dropped before an imminent one is delayed. Nothing ever
  displaces a booking of its own rank or higher.

The invariant, held by property tests: after any sequence of plans, every window of length
`window` holds at most `per_window` bookings of a number, and no two bookings of the same
text to a number are closer than `same_text_interval`.

`TokenBucket` paces requests against a provider's rate limit (QPS), with time passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

NEVER_DISPLACED = 1_000  # rank of traffic no public message may displace (officials' 叫应)


@dataclass(frozen=True)
class NumberBudget:
    """One provider's per-number limits (configurable per provider)."""

    same_text_interval: timedelta = timedelta(seconds=30)
    per_window: int = 10
    window: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.per_window < 1:
            raise ValueError("per_window must be at least 1")
        if self.window <= timedelta(0) or self.same_text_interval < timedelta(0):
            raise ValueError("window must be positive and same_text_interval not negative")


@dataclass(frozen=True)
class Booking:
    """A message a number has (sent or planned) at `at`. `text` identifies the wording (the
    body or a digest of it); `rank` how urgent it is (a 631 step's rank for public messages,
    NEVER_DISPLACED for everything else); `key` names a movable booking (a pending public
    delivery) so that a displacement can be applied; None: cannot be moved."""

    at: datetime
    text: str
    rank: int = NEVER_DISPLACED
    key: int | None = None

    @property
    def movable(self) -> bool:
        return self.key is not None


class Outcome(enum.StrEnum):
    SEND = "send"  # at `now`
    DEFERRED = "deferred"  # later, within `not_after`
    OVER_BUDGET = "over_budget"  # no time before `not_after` fits the number's budget


@dataclass(frozen=True)
class Request:
    text: str
    rank: int
    not_after: datetime  # a later send is worthless (the warning expires, or max delay)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    at: datetime | None  # when to send; None when over budget
    displaced: tuple[int, ...] = ()  # keys of movable bookings dropped to make room
    booking: Booking | None = None  # the new booking (None when over budget)


def _fits(t: datetime, text: str, bookings: Sequence[Booking], budget: NumberBudget) -> bool:
    """Whether one more message `text` at `t` keeps the number within its budget."""
    gap = budget.same_text_interval
    for b in bookings:
        if b.text == text and abs(b.at - t) < gap:
            return False
    # The rolling-window count is largest in windows that end at a booking (or at t).
    times = sorted([b.at for b in bookings] + [t])
    for end in times:
        if end < t or end - budget.window >= t:
            continue  # a window ending at `end` does not contain t
        start = end - budget.window
        if sum(1 for x in times if start < x <= end) > budget.per_window:
            return False
    return True


def _candidates(now: datetime, bookings: Sequence[Booking], text: str, budget: NumberBudget) -> list[datetime]:
    """Every time at which a message could first fit: now, a booking leaving a window, the
    same-text interval after a booking of the same text ends."""
    out = {now}
    for b in bookings:
        for t in (b.at + budget.window, b.at + budget.window + timedelta(microseconds=1)):
            if t > now:
                out.add(t)
        if b.text == text:
            t = b.at + budget.same_text_interval
            if t > now:
                out.add(t)
    return sorted(out)


def earliest(now: datetime, text: str, bookings: Sequence[Booking], budget: NumberBudget,
             not_after: datetime) -> datetime | None:
    """The earliest time ≥ now, ≤ not_after, at which `text` fits; None if there is none."""
    for t in _candidates(now, bookings, text, budget):
        if t > not_after:
            return None
        if _fits(t, text, bookings, budget):
            return t
    return None


def _order_to_displace(bookings: Iterable[Booking], rank: int) -> list[Booking]:
    """Movable bookings of a lower rank, the least urgent and then the latest first."""
    return sorted((b for b in bookings if b.movable and b.rank < rank), key=lambda b: (b.rank, -b.at.timestamp()))


def plan_number(now: datetime, budget: NumberBudget, bookings: Sequence[Booking], req: Request) -> Decision:
    """Book one message to one number (see the module's docstring)."""
    best = earliest(now, req.text, bookings, budget, req.not_after)
    if best != now:
        # Drop lower steps, one at a time, until the request goes now (or nothing is left).
        kept = list(bookings)
        dropped: list[int] = []
        for b in _order_to_displace(bookings, req.rank):
            kept.remove(b)
            dropped.append(b.key or 0)
            t = earliest(now, req.text, kept, budget, req.not_after)
            if t == now:
                # Keep only what was needed: give back what can stay, latest-dropped last.
                for key in list(dropped):
                    back = next(x for x in bookings if x.key == key)
                    if earliest(now, req.text, [*kept, back], budget, req.not_after) == now:
                        kept.append(back)
                        dropped.remove(key)
                new = Booking(now, req.text, req.rank)
                return Decision(Outcome.SEND, now, tuple(dropped), new)
        # Dropping lower steps does not make it go now: drop nothing, take the best time.
    if best is None:
        return Decision(Outcome.OVER_BUDGET, None)
    new = Booking(best, req.text, req.rank)
    return Decision(Outcome.SEND if best == now else Outcome.DEFERRED, best, (), new)


@dataclass
class Ledger:
    """Bookings per number during one planning pass: apply decisions as they are made, so a
    second request for a number sees the first."""

    budget: NumberBudget
    bookings: dict[str, list[Booking]] = field(default_factory=dict)

    def plan(self, now: datetime, number: str, req: Request) -> Decision:
        current = self.bookings.setdefault(number, [])
        d = plan_number(now, self.budget, current, req)
        if d.displaced:
            gone = set(d.displaced)
            current[:] = [b for b in current if b.key not in gone]
        if d.booking is not None:
            current.append(d.booking)
        return d


def within_budget(bookings: Sequence[Booking], budget: NumberBudget) -> bool:
    """The invariant: no window over the cap, no same text closer than the interval."""
    times = sorted(b.at for b in bookings)
    for end in times:
        if sum(1 for x in times if end - budget.window < x <= end) > budget.per_window:
            return False
    ordered = sorted(bookings, key=lambda b: b.at)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b.at - a.at >= budget.same_text_interval:
                break
            if a.text == b.text:
                return False
    return True


@dataclass(frozen=True)
class TokenBucket:
    """A provider's request rate: `rate` tokens a second, at most `burst` saved up. Immutable:
    `take` returns how long to wait before sending `n` and the bucket after taking them."""

    rate: float
    burst: float
    tokens: float
    at: float  # monotonic seconds of `tokens`

    @classmethod
    def full(cls, rate: float, burst: float | None, at: float) -> TokenBucket:
        if rate <= 0:
            raise ValueError("rate must be positive")
        b = max(burst if burst is not None else rate, 1.0)
        return cls(rate, b, b, at)

    def take(self, n: float, at: float) -> tuple[float, TokenBucket]:
        tokens = min(self.burst, self.tokens + max(at - self.at, 0.0) * self.rate)
        left = tokens - n
        wait = 0.0 if left >= 0 else -left / self.rate
        return wait, replace(self, tokens=left, at=max(at, self.at))
