"""The 叫应 state machine, as pure functions over an immutable snapshot.

    OPEN --deadline--> OPEN (next rung) ... --deadline--> DUTY_ROOM
    OPEN | DUTY_ROOM --confirm--> CONFIRMED        (final: nothing un-confirms)
    OPEN | DUTY_ROOM --cancel-->  CANCELLED        (final)

`fence` is bumped by every transition. A timer or worker captures the fence when it reads
the call; a stale one (the call moved on since) carries an old fence and changes nothing,
so a rung can never fire twice. The database layer stores the snapshot and applies the
transition with a compare-and-set on the fence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from warnd.core.domain import Action, CallState
from warnd.core.policy import Ladder, Rung

FINAL_STATES = frozenset({CallState.CONFIRMED, CallState.CANCELLED})


@dataclass(frozen=True)
class CallSnapshot:
    state: CallState
    level: int  # ladder rungs fired so far
    fence: int
    deadline: datetime | None  # when the next rung fires; None unless OPEN


@dataclass(frozen=True)
class Transition:
    call: CallSnapshot
    fired: Rung | None  # the rung the caller must now carry out (send, hand to duty room)
    changed: bool


def open_call(deadline: datetime) -> CallSnapshot:
    return CallSnapshot(state=CallState.OPEN, level=0, fence=0, deadline=deadline)


def _same(call: CallSnapshot) -> Transition:
    return Transition(call=call, fired=None, changed=False)


def on_deadline(call: CallSnapshot, fence: int, now: datetime, ladder: Ladder) -> Transition:
    """Fire the next rung if this timer is current and the deadline has passed.

    The next deadline is computed from the previous deadline, not from `now`: after an
    outage the missed rungs fire one per call, immediately and in order, keeping the
    original timetable rather than restarting it.
    """
    if (
        call.state is not CallState.OPEN
        or call.fence != fence
        or call.deadline is None
        or now < call.deadline
    ):
        return _same(call)
    # A level past the end (the ladder was shortened by a config edit) lands on the last
    # rung, which is always DUTY_ROOM: a silent call still reaches a human.
    rung = ladder.rungs[min(call.level, len(ladder.rungs) - 1)]
    if rung.action is Action.DUTY_ROOM:
        nxt = replace(
            call,
            state=CallState.DUTY_ROOM,
            level=call.level + 1,
            fence=call.fence + 1,
            deadline=None,
        )
    else:
        nxt = replace(
            call, level=call.level + 1, fence=call.fence + 1, deadline=call.deadline + rung.wait
        )
    return Transition(call=nxt, fired=rung, changed=True)


def on_confirm(call: CallSnapshot, now: datetime) -> Transition:
    """应. Confirming in the duty room still counts; a duplicate webhook changes nothing."""
    del now  # part of the contract (the caller records confirmed_at); no rule depends on it yet
    if call.state in FINAL_STATES:
        return _same(call)
    return Transition(
        call=replace(call, state=CallState.CONFIRMED, fence=call.fence + 1, deadline=None),
        fired=None,
        changed=True,
    )


def on_cancel(call: CallSnapshot) -> Transition:
    """The warning was lifted or superseded before this call was confirmed."""
    if call.state in FINAL_STATES:
        return _same(call)
    return Transition(
        call=replace(call, state=CallState.CANCELLED, fence=call.fence + 1, deadline=None),
        fired=None,
        changed=True,
    )
