from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.core.callstate import (
    CallSnapshot,
    Transition,
    on_cancel,
    on_confirm,
    on_deadline,
    open_call,
)
from warnd.core.domain import Action, CallState
from warnd.core.policy import Ladder, Rung

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

STANDARD = Ladder(
    "standard",
    (
        Rung(Action.RESEND, 5 * MIN),
        Rung(Action.DEPUTY, 5 * MIN),
        Rung(Action.SUPERIOR, 5 * MIN),
        Rung(Action.DUTY_ROOM, timedelta(0)),
    ),
)
DEADLINE = T0 + 10 * MIN


def snap(
    state: CallState, level: int = 0, fence: int = 0, deadline: datetime | None = None
) -> CallSnapshot:
    return CallSnapshot(state=state, level=level, fence=fence, deadline=deadline)


def test_open_call() -> None:
    assert open_call(DEADLINE) == CallSnapshot(CallState.OPEN, 0, 0, DEADLINE)


# ------------------------------------------------------------------ on_deadline


def test_before_deadline_nothing_happens() -> None:
    call = open_call(DEADLINE)
    tr = on_deadline(call, 0, DEADLINE - timedelta(microseconds=1), STANDARD)
    assert tr == Transition(call, None, False)


def test_full_ladder_on_schedule() -> None:
    call = open_call(DEADLINE)
    expected = [
        (Action.RESEND, CallState.OPEN, DEADLINE + 5 * MIN),
        (Action.DEPUTY, CallState.OPEN, DEADLINE + 10 * MIN),
        (Action.SUPERIOR, CallState.OPEN, DEADLINE + 15 * MIN),
        (Action.DUTY_ROOM, CallState.DUTY_ROOM, None),
    ]
    for i, (action, state, deadline) in enumerate(expected):
        assert call.deadline is not None
        tr = on_deadline(call, call.fence, call.deadline, STANDARD)
        assert tr.changed and tr.fired is not None and tr.fired.action is action
        assert tr.call == CallSnapshot(state, i + 1, i + 1, deadline)
        call = tr.call
    # Exhausted: further timers do nothing.
    assert on_deadline(call, call.fence, T0 + timedelta(days=1), STANDARD) == Transition(
        call, None, False
    )


def test_stale_fence_is_ignored() -> None:
    call = on_deadline(open_call(DEADLINE), 0, DEADLINE, STANDARD).call
    assert call.fence == 1
    # The first timer fires again (duplicate delivery of the same job): no second resend.
    assert on_deadline(call, 0, T0 + timedelta(hours=1), STANDARD) == Transition(call, None, False)
    # A timer from the future (fence never issued) is not current either.
    assert on_deadline(call, 2, T0 + timedelta(hours=1), STANDARD).changed is False


def test_catch_up_after_outage_keeps_absolute_timetable() -> None:
    call = open_call(DEADLINE)
    late = DEADLINE + timedelta(hours=2)
    fired = []
    while True:
        tr = on_deadline(call, call.fence, late, STANDARD)
        if not tr.changed:
            break
        assert tr.fired is not None
        fired.append(tr.fired.action)
        if tr.call.deadline is not None:
            # Next deadline from the previous deadline, not from `late`: still overdue.
            assert call.deadline is not None
            assert tr.call.deadline == call.deadline + tr.fired.wait
            assert tr.call.deadline <= late
        call = tr.call
    assert fired == [r.action for r in STANDARD.rungs]
    assert call.state is CallState.DUTY_ROOM


def test_one_rung_ladder_goes_straight_to_duty_room() -> None:
    ladder = Ladder("direct", (Rung(Action.DUTY_ROOM, timedelta(0)),))
    tr = on_deadline(open_call(DEADLINE), 0, DEADLINE, ladder)
    assert tr.call == CallSnapshot(CallState.DUTY_ROOM, 1, 1, None)
    assert tr.fired == ladder.rungs[0]


def test_level_beyond_shortened_ladder_hands_to_duty_room() -> None:
    # Call was at level 3 of a long ladder; the county then shortened the ladder to 2 rungs.
    short = Ladder("short", (Rung(Action.RESEND, MIN), Rung(Action.DUTY_ROOM, timedelta(0))))
    call = snap(CallState.OPEN, level=3, fence=3, deadline=DEADLINE)
    tr = on_deadline(call, 3, DEADLINE, short)
    assert tr.fired is not None and tr.fired.action is Action.DUTY_ROOM
    assert tr.call.state is CallState.DUTY_ROOM


@pytest.mark.parametrize("state", [CallState.CONFIRMED, CallState.CANCELLED, CallState.DUTY_ROOM])
def test_deadline_only_acts_on_open(state: CallState) -> None:
    call = snap(state, level=1, fence=4, deadline=DEADLINE)
    assert on_deadline(call, 4, DEADLINE + timedelta(hours=1), STANDARD) == Transition(
        call, None, False
    )


def test_open_without_deadline_never_fires() -> None:
    call = snap(CallState.OPEN, deadline=None)
    assert on_deadline(call, 0, T0 + timedelta(days=9), STANDARD).changed is False


# ------------------------------------------------------------------ confirm / cancel


@pytest.mark.parametrize("state", [CallState.OPEN, CallState.DUTY_ROOM])
def test_confirm_from_open_or_duty_room(state: CallState) -> None:
    call = snap(state, level=2, fence=5, deadline=DEADLINE if state is CallState.OPEN else None)
    tr = on_confirm(call, T0)
    assert tr == Transition(CallSnapshot(CallState.CONFIRMED, 2, 6, None), None, True)


@pytest.mark.parametrize("state", [CallState.CONFIRMED, CallState.CANCELLED])
def test_confirm_is_idempotent_and_final(state: CallState) -> None:
    call = snap(state, level=1, fence=3)
    assert on_confirm(call, T0) == Transition(call, None, False)


@pytest.mark.parametrize("state", [CallState.OPEN, CallState.DUTY_ROOM])
def test_cancel_from_open_or_duty_room(state: CallState) -> None:
    call = snap(state, level=1, fence=2, deadline=DEADLINE if state is CallState.OPEN else None)
    assert on_cancel(call) == Transition(CallSnapshot(CallState.CANCELLED, 1, 3, None), None, True)


@pytest.mark.parametrize("state", [CallState.CONFIRMED, CallState.CANCELLED])
def test_cancel_does_not_touch_final_calls(state: CallState) -> None:
    call = snap(state, level=1, fence=3)
    assert on_cancel(call) == Transition(call, None, False)


def test_confirm_invalidates_pending_timer() -> None:
    call = open_call(DEADLINE)
    confirmed = on_confirm(call, T0).call
    assert on_deadline(confirmed, call.fence, DEADLINE, STANDARD).changed is False
    assert on_deadline(confirmed, confirmed.fence, DEADLINE, STANDARD).changed is False


# ------------------------------------------------------------------ properties

ACTIONS = [Action.RESEND, Action.DEPUTY, Action.SUPERIOR]

ladders = st.builds(
    lambda rungs: Ladder("l", (*rungs, Rung(Action.DUTY_ROOM, timedelta(0)))),
    st.lists(
        st.builds(Rung, st.sampled_from(ACTIONS), st.integers(1, 30).map(lambda m: m * MIN)),
        max_size=5,
    ),
)


@dataclass(frozen=True)
class Deadline:
    fence_offset: int  # 0: current fence; negative: stale; positive: never issued
    advance_minutes: int  # how far the clock moves before this timer runs (may be 0)


@dataclass(frozen=True)
class Confirm:
    pass


@dataclass(frozen=True)
class Cancel:
    pass


events = st.lists(
    st.one_of(
        st.builds(Deadline, st.sampled_from([0, 0, 0, -1, -2, 1]), st.integers(0, 40)),
        st.just(Confirm()),
        st.just(Cancel()),
    ),
    max_size=40,
)


def run(ladder: Ladder, evs: list[object]) -> tuple[CallSnapshot, list[Rung], list[CallSnapshot]]:
    call = open_call(T0 + 10 * MIN)
    now = T0
    fired: list[Rung] = []
    history = [call]
    for ev in evs:
        if isinstance(ev, Deadline):
            now += ev.advance_minutes * MIN
            tr = on_deadline(call, call.fence + ev.fence_offset, now, ladder)
            if ev.fence_offset != 0:
                assert not tr.changed, "a stale or foreign fence must never act"
        elif isinstance(ev, Confirm):
            tr = on_confirm(call, now)
        else:
            tr = on_cancel(call)
        if tr.fired is not None:
            fired.append(tr.fired)
        assert tr.changed == (tr.call != call)
        if tr.changed:
            assert tr.call.fence == call.fence + 1
        else:
            assert tr.call is call and tr.fired is None
        call = tr.call
        history.append(call)
    return call, fired, history


@settings(max_examples=400, deadline=None)
@given(ladders, events)
def test_rungs_fire_at_most_once_and_in_order(ladder: Ladder, evs: list[object]) -> None:
    call, fired, history = run(ladder, evs)
    assert fired == list(ladder.rungs[: len(fired)])
    assert call.level == len(fired)
    fences = [c.fence for c in history]
    assert fences == sorted(fences)
    # DUTY_ROOM only after the whole ladder, and only once.
    assert sum(1 for r in fired if r.action is Action.DUTY_ROOM) <= 1
    if call.state is CallState.DUTY_ROOM:
        assert fired == list(ladder.rungs)


@settings(max_examples=400, deadline=None)
@given(ladders, events)
def test_final_states_are_final(ladder: Ladder, evs: list[object]) -> None:
    _, _, history = run(ladder, evs)
    for before, after in itertools.pairwise(history):
        if before.state in (CallState.CONFIRMED, CallState.CANCELLED):
            assert after == before
        if after.state is not CallState.OPEN:
            assert after.deadline is None
        if before.state is CallState.DUTY_ROOM:
            assert after.state in (CallState.DUTY_ROOM, CallState.CONFIRMED, CallState.CANCELLED)
            assert after.level == before.level


@settings(max_examples=400, deadline=None)
@given(ladders, events, st.booleans())
def test_time_alone_ends_every_call_in_a_final_or_duty_room_state(
    ladder: Ladder, evs: list[object], drive_by_deadline: bool
) -> None:
    call, fired, _ = run(ladder, evs)
    # Then a correct scheduler: always the current fence, either exactly at each deadline or
    # far in the future (catch-up after an outage).
    far = T0 + timedelta(days=30)
    for _ in range(len(ladder.rungs) + 2):
        when = call.deadline if drive_by_deadline and call.deadline is not None else far
        tr = on_deadline(call, call.fence, when, ladder)
        if tr.fired is not None:
            fired.append(tr.fired)
        call = tr.call
    assert call.state in (CallState.CONFIRMED, CallState.DUTY_ROOM, CallState.CANCELLED)
    assert fired == list(ladder.rungs[: len(fired)])
    if call.state is CallState.DUTY_ROOM:
        assert fired == list(ladder.rungs)


@settings(max_examples=200, deadline=None)
@given(ladders, events)
def test_confirm_always_wins_over_later_events(ladder: Ladder, evs: list[object]) -> None:
    call, _, _ = run(ladder, evs)
    if call.state is CallState.CANCELLED:
        return
    confirmed = on_confirm(call, T0).call
    assert confirmed.state is CallState.CONFIRMED
    final, fired, _ = run_from(confirmed, ladder, evs)
    assert final == confirmed and fired == []


def run_from(
    call: CallSnapshot, ladder: Ladder, evs: list[object]
) -> tuple[CallSnapshot, list[Rung], None]:
    now = T0 + timedelta(days=1)
    fired: list[Rung] = []
    for ev in evs:
        if isinstance(ev, Deadline):
            tr = on_deadline(call, call.fence + ev.fence_offset, now, ladder)
        elif isinstance(ev, Confirm):
            tr = on_confirm(call, now)
        else:
            tr = on_cancel(call)
        if tr.fired is not None:
            fired.append(tr.fired)
        call = tr.call
    return call, fired, None
