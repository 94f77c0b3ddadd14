"""The public budget planner (warnd.core.public_budget): examples, then properties over random
storms of overlapping warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.core.phones import mask_phone
from warnd.core.public_budget import (
    NEVER_DISPLACED,
    Booking,
    Ledger,
    NumberBudget,
    Outcome,
    Request,
    TokenBucket,
    plan_number,
    within_budget,
)
from warnd.core.replies import parse_subscription

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
TENCENT = NumberBudget(timedelta(seconds=30), 10, timedelta(days=1))
FORECAST, WARNING, IMMINENT = 0, 1, 2
LATER = T0 + timedelta(hours=2)


def req(text: str = "A", rank: int = IMMINENT, not_after: datetime = LATER) -> Request:
    return Request(text, rank, not_after)


def test_a_fresh_number_is_sent_now() -> None:
    d = plan_number(T0, TENCENT, [], req())
    assert d.outcome is Outcome.SEND and d.at == T0 and d.displaced == ()


def test_the_same_text_within_30_s_is_deferred_to_the_end_of_the_interval() -> None:
    d = plan_number(T0, TENCENT, [Booking(T0 - timedelta(seconds=10), "A")], req("A"))
    assert d.outcome is Outcome.DEFERRED and d.at == T0 + timedelta(seconds=20)
    # A different text is not held back by the interval.
    assert plan_number(T0, TENCENT, [Booking(T0 - timedelta(seconds=10), "A")], req("B")).at == T0


def test_a_full_day_defers_until_the_oldest_leaves_the_window_or_is_over_budget() -> None:
    full = [Booking(T0 - timedelta(hours=23, minutes=50) + timedelta(minutes=i), f"x{i}") for i in range(10)]
    d = plan_number(T0, TENCENT, full, req(not_after=T0 + timedelta(hours=1)))
    assert d.outcome is Outcome.DEFERRED and d.at is not None
    assert T0 + timedelta(minutes=10) <= d.at <= T0 + timedelta(minutes=10, seconds=1)
    # The warning expires before a slot frees: over budget, nothing booked, nothing dropped.
    d = plan_number(T0, TENCENT, full, req(not_after=T0 + timedelta(minutes=5)))
    assert d.outcome is Outcome.OVER_BUDGET and d.at is None and d.booking is None


def test_an_imminent_warning_drops_a_pending_lower_step_rather_than_wait() -> None:
    sent = [Booking(T0 - timedelta(hours=1, minutes=i), f"s{i}") for i in range(9)]
    pending_warning = Booking(T0 + timedelta(minutes=1), "warn", rank=WARNING, key=77)
    d = plan_number(T0, TENCENT, [*sent, pending_warning], req("imm", IMMINENT))
    assert d.outcome is Outcome.SEND and d.at == T0 and d.displaced == (77,)


def test_a_lower_step_never_displaces_an_imminent_one_nor_an_officials_message() -> None:
    sent = [Booking(T0 - timedelta(hours=1, minutes=i), f"s{i}") for i in range(9)]
    pending_imminent = Booking(T0 + timedelta(minutes=1), "imm", rank=IMMINENT, key=5)
    d = plan_number(T0, TENCENT, [*sent, pending_imminent], req("warn", WARNING, T0 + timedelta(hours=1)))
    assert d.displaced == () and d.outcome is Outcome.OVER_BUDGET
    official = [Booking(T0 - timedelta(minutes=i), f"o{i}", NEVER_DISPLACED) for i in range(10)]
    d = plan_number(T0, TENCENT, official, req("imm", IMMINENT, T0 + timedelta(minutes=30)))
    assert d.displaced == () and d.outcome is Outcome.OVER_BUDGET


def test_only_as_many_lower_steps_are_dropped_as_needed() -> None:
    sent = [Booking(T0 - timedelta(hours=1, minutes=i), f"s{i}") for i in range(8)]
    lower = [Booking(T0 + timedelta(minutes=1), "f", FORECAST, key=1),
             Booking(T0 + timedelta(minutes=2), "w", WARNING, key=2)]
    d = plan_number(T0, TENCENT, [*sent, *lower], req("imm", IMMINENT))
    assert d.outcome is Outcome.SEND and d.displaced == (1,)  # the forecast goes, the warning stays


def test_the_ledger_sees_its_own_bookings() -> None:
    ledger = Ledger(NumberBudget(timedelta(seconds=30), 2, timedelta(days=1)))
    outcomes = [ledger.plan(T0, "+8613800000001", req(f"t{i}", not_after=T0 + timedelta(hours=1))).outcome
                for i in range(3)]
    assert outcomes == [Outcome.SEND, Outcome.SEND, Outcome.OVER_BUDGET]
    assert ledger.plan(T0, "+8613800000002", req("t0")).outcome is Outcome.SEND


def test_a_budget_must_allow_one_message() -> None:
    with pytest.raises(ValueError):
        NumberBudget(per_window=0)


# -- properties -----------------------------------------------------------------------------

budgets = st.builds(NumberBudget, same_text_interval=st.integers(0, 120).map(lambda s: timedelta(seconds=s)),
                    per_window=st.integers(1, 6), window=st.integers(60, 7200).map(lambda s: timedelta(seconds=s)))
requests = st.lists(st.tuples(
    st.integers(0, 3 * 3600),  # seconds after T0 the warning is planned
    st.sampled_from(["r", "o", "y", "i"]),  # its text
    st.sampled_from([FORECAST, WARNING, IMMINENT]),
    st.integers(0, 3 * 3600),  # how long a late send is still worth it
    st.integers(0, 2),  # which of three numbers
), min_size=1, max_size=40)


def _storm(budget: NumberBudget, reqs: list[tuple[int, str, int, int, int]]) -> tuple[Ledger, list[tuple[str, Request, object]]]:
    ledger = Ledger(budget)
    key = 0
    log: list[tuple[str, Request, object]] = []
    for offset, text, rank, worth, n in sorted(reqs, key=lambda r: r[0]):
        now = T0 + timedelta(seconds=offset)
        number = f"+861380000000{n}"
        r = Request(text, rank, now + timedelta(seconds=worth))
        d = ledger.plan(now, number, r)
        if d.booking is not None:
            # Public bookings stay movable (pending) for the rest of the storm.
            key += 1
            ledger.bookings[number][-1] = Booking(d.booking.at, d.booking.text, d.booking.rank, key)
        log.append((number, r, d))
    return ledger, log


@settings(max_examples=300, deadline=None)
@given(budgets, requests)
def test_no_number_ever_exceeds_its_budget(budget: NumberBudget, reqs: list[tuple[int, str, int, int, int]]) -> None:
    ledger, log = _storm(budget, reqs)
    for bookings in ledger.bookings.values():
        assert within_budget(bookings, budget)
    for _, r, d in log:
        assert d.outcome is Outcome.OVER_BUDGET or (d.at is not None and d.at <= r.not_after)  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(budgets, requests)
def test_an_imminent_warning_is_never_displaced_by_a_lower_one(
        budget: NumberBudget, reqs: list[tuple[int, str, int, int, int]]) -> None:
    ledger = Ledger(budget)
    ranks: dict[int, int] = {}
    key = 0
    for offset, text, rank, worth, n in sorted(reqs, key=lambda r: r[0]):
        now = T0 + timedelta(seconds=offset)
        number = f"+861380000000{n}"
        d = ledger.plan(now, number, Request(text, rank, now + timedelta(seconds=worth)))
        for k in d.displaced:
            assert ranks[k] < rank  # only strictly lower steps are ever dropped
        if d.booking is not None:
            key += 1
            ranks[key] = rank
            ledger.bookings[number][-1] = Booking(d.booking.at, d.booking.text, d.booking.rank, key)


@settings(max_examples=200, deadline=None)
@given(budgets, st.lists(st.tuples(st.integers(-3600, 0), st.sampled_from("abc"), st.integers(0, 1)), max_size=12))
def test_an_imminent_warning_waits_only_when_dropping_every_lower_step_would_not_help(
        budget: NumberBudget, history: list[tuple[int, str, int]]) -> None:
    ledger = Ledger(budget)
    number = "+8613800000001"
    for i, (offset, text, rank) in enumerate(sorted(history)):
        t = T0 + timedelta(seconds=offset)
        d = ledger.plan(t, number, Request(text, rank, t + timedelta(hours=3)))
        if d.booking is not None:
            ledger.bookings[number][-1] = Booking(d.booking.at, d.booking.text, rank, i + 1)
    before = list(ledger.bookings.get(number, []))
    d = ledger.plan(T0, number, Request("imminent", IMMINENT, T0 + timedelta(hours=3)))
    if d.outcome is not Outcome.SEND:
        # Even with every lower step gone it could not go now.
        fixed = [b for b in before if not (b.movable and b.rank < IMMINENT)]
        again = plan_number(T0, budget, fixed, Request("imminent", IMMINENT, T0 + timedelta(hours=3)))
        assert again.at != T0
    assert within_budget(ledger.bookings[number], budget)


@settings(max_examples=200, deadline=None)
@given(st.floats(1, 5000), st.lists(st.tuples(st.floats(0, 2), st.integers(1, 200)), min_size=1, max_size=50))
def test_the_token_bucket_never_lets_more_through_than_its_rate(rate: float, takes: list[tuple[float, int]]) -> None:
    bucket = TokenBucket.full(rate, None, 0.0)
    t = 0.0
    sent = 0
    for gap, n in takes:
        t += gap
        wait, bucket = bucket.take(n, t)
        assert wait >= 0
        t += wait  # the sender waits before sending
        sent += n
        assert sent <= bucket.burst + t * rate + 1e-6


def test_masks_resident_numbers() -> None:
    assert mask_phone("+8613812345678") == "138****5678"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+867451234567") == "745***4567"
    assert "12345" not in mask_phone("+86123456")


@pytest.mark.parametrize(("text", "expected"), [
    ("TD", False), ("td", False), (" 退订 ", False), ("退订。", False), ("ＴＤ", False), ("T", False),
    ("订阅", True), ("DY", True),
    ("不要退订", None), ("收到", None), ("1", None), ("请问怎么退订", None), ("", None),
])
def test_opt_out_words(text: str, expected: bool | None) -> None:
    assert parse_subscription(text) is expected
