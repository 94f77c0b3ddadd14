"""What to do with a message after a definite transient failure (the provider said "not now",
or could not be reached) — pure, from the facts the outbox reads.

A message for a warning still in force persists: it is retried with capped back-off until
the warning ends (expired, lifted, superseded) or its call is closed (confirmed, cancelled) —
no fixed number of attempts gives it up while it matters. After `failover_after` of failing
it moves to the next channel (a second SMS provider, or the policy's next channel) when one
is configured. A notice to the duty room tied to no warning (a provider failing) persists
for NOTICE_HORIZON. Any other message tied to no warning in force (a lifted notice, a
reply help) is given up after `max_attempts`, unless it can fail over first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from warnd.core.domain import AlertState, CallState, Purpose, Step


class AfterFailure(enum.StrEnum):
    RETRY = "retry"
    FAIL_OVER = "fail_over"
    GIVE_UP = "give_up"
    MOOT = "moot"  # its warning ended or its call closed: nothing to deliver any more


@dataclass(frozen=True)
class RetryFacts:
    purpose: str
    attempts: int
    created_at: datetime
    alert_state: str | None = None  # None: tied to no warning
    alert_expires: datetime | None = None
    call_state: str | None = None  # None: tied to no call


OPEN_CALLS = (CallState.OPEN.value, CallState.DUTY_ROOM.value)
NOTICE_HORIZON = timedelta(days=1)


def in_force(f: RetryFacts, now: datetime) -> bool:
    """Its warning is still in force and its call (if any) still open."""
    if f.alert_state != AlertState.ACTIVE.value:
        return False
    if f.alert_expires is not None and f.alert_expires <= now:
        return False
    return f.call_state is None or f.call_state in OPEN_CALLS


def after_failure(f: RetryFacts, now: datetime, *, max_attempts: int, failover_after: timedelta | None,
                  can_fail_over: bool) -> AfterFailure:
    failing_long = (can_fail_over and failover_after is not None and now - f.created_at >= failover_after)
    if f.alert_state is not None and f.purpose != Purpose.CANCEL_NOTICE.value:
        if not in_force(f, now):
            return AfterFailure.MOOT
        return AfterFailure.FAIL_OVER if failing_long else AfterFailure.RETRY
    if failing_long:
        return AfterFailure.FAIL_OVER
    if f.purpose == Purpose.DUTY_NOTICE.value and f.alert_state is None:
        return AfterFailure.RETRY if now - f.created_at < NOTICE_HORIZON else AfterFailure.GIVE_UP
    return AfterFailure.GIVE_UP if f.attempts >= max_attempts else AfterFailure.RETRY


def backoff_seconds(attempts: int, first: float, cap: float, retry_after: float | None = None) -> float:
    """first × 2^(attempts−1), capped; never sooner than the provider's Retry-After."""
    delay = min(first * 2.0 ** min(max(attempts - 1, 0), 32), cap)
    return max(delay, retry_after or 0.0)


# The order a backlog goes out in: the most urgent first.
STEP_RANK = {Step.IMMINENT.value: 0, Step.WARNING.value: 1, Step.FORECAST.value: 2}
PURPOSE_RANK = {Purpose.DUTY_NOTICE.value: 0}
