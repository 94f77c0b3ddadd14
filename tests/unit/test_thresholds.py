"""Telemetry thresholds: pure functions, examples and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warnd.core.thresholds import (
    Measures,
    Pair,
    Status,
    Thresholds,
    TLevel,
    decide,
    level_of,
    rain_totals,
)

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
TH = Thresholds(rain={1: Pair(30, 50), 3: Pair(50, 80), 6: Pair(70, 100)}, water_level=Pair(3.5, 4.2),
                clear_ratio=0.8, hold_off=timedelta(hours=1), max_age=timedelta(minutes=30))


def wl(v: float) -> Measures:
    return Measures(water_level=v)


def run(values: list[tuple[int, float]], th: Thresholds = TH, lag: int = 0) -> tuple[list[tuple[int, TLevel]], Status]:
    """Feed (minute, water level) readings, each received `lag` minutes later."""
    status, raised = Status(), []
    for minute, v in values:
        at = T0 + minute * MIN
        d = decide(status, wl(v), at, at + lag * MIN, th)
        status = d.status
        if d.raise_level is not None:
            raised.append((minute, d.raise_level))
    return raised, status


def test_pair_levels_and_unused_thresholds() -> None:
    p = Pair(30, 50)
    assert [p.level(v) for v in (None, 0, 29.9, 30, 49.9, 50, 500)] == [
        TLevel.NONE, TLevel.NONE, TLevel.NONE, TLevel.PREPARE, TLevel.PREPARE, TLevel.EVACUATE, TLevel.EVACUATE]
    assert Pair(None, 50).level(40) == TLevel.NONE and Pair(30, None).level(99) == TLevel.PREPARE
    assert p.level(24, scale=0.8) == TLevel.PREPARE and p.level(23.9, scale=0.8) == TLevel.NONE


def test_rain_windows_count_only_the_window_before_the_reading() -> None:
    rs = [(T0 - timedelta(hours=6), 100.0), (T0 - timedelta(hours=5), 10), (T0 - timedelta(hours=2), 20),
          (T0 - timedelta(minutes=59), 5), (T0, 7), (T0 + MIN, 1000)]
    assert rain_totals(rs, T0) == {1: 12, 3: 32, 6: 42}
    assert rain_totals([], T0) == {1: 0, 3: 0, 6: 0}
    assert rain_totals([(T0, -3.0)], T0)[1] == 0  # a negative increment (gauge reset) never counts


def test_level_of_names_the_deciding_measure() -> None:
    assert level_of(Measures(rain={1: 31, 3: 40, 6: 40}), TH) == (TLevel.PREPARE, "rain_1h")
    assert level_of(Measures(rain={1: 20, 3: 81}), TH) == (TLevel.EVACUATE, "rain_3h")
    assert level_of(Measures(rain={6: 75}, water_level=4.3), TH) == (TLevel.EVACUATE, "water_level")
    assert level_of(Measures(), TH) == (TLevel.NONE, "")


def test_crossing_raises_once_while_it_keeps_raining() -> None:
    raised, status = run([(0, 3.0), (10, 3.6), (20, 3.7), (30, 3.8), (40, 3.9), (50, 3.6)])
    assert raised == [(10, TLevel.PREPARE)] and status.level == TLevel.PREPARE


def test_hovering_around_the_threshold_does_not_flap() -> None:
    # 3.5 ± a bit, never below the 0.8 × 3.5 = 2.8 band: one warning, no clear.
    raised, status = run([(i * 5, 3.5 + (0.05 if i % 2 else -0.4)) for i in range(40)])
    assert raised == [(5, TLevel.PREPARE)] and status.level == TLevel.PREPARE


def test_falling_back_clears_and_hold_off_suppresses_a_quick_return() -> None:
    status = Status()
    seq = [(0, 3.6, "raise"), (10, 2.7, "clear"), (20, 3.6, "held"), (30, 2.0, "clear"), (70, 3.6, "raise")]
    for minute, v, reason in seq:
        d = decide(status, wl(v), T0 + minute * MIN, T0 + minute * MIN, TH)
        assert d.reason == reason, (minute, d)
        assert d.cleared == (reason == "clear")
        status = d.status


def test_rise_to_evacuate_is_never_held() -> None:
    raised, _ = run([(0, 3.6), (5, 4.3)])
    assert raised == [(0, TLevel.PREPARE), (5, TLevel.EVACUATE)]
    # Straight to evacuate: one warning at the higher level only.
    raised, _ = run([(0, 3.0), (5, 4.5), (10, 3.6), (15, 4.4)])
    assert raised == [(5, TLevel.EVACUATE)]


def test_evacuate_drops_to_prepare_inside_the_band_without_a_new_warning() -> None:
    raised, status = run([(0, 4.3), (10, 3.4)])
    assert raised == [(0, TLevel.EVACUATE)] and status.level == TLevel.EVACUATE  # 3.4 ≥ 0.8 × 4.2
    raised, status = run([(0, 4.3), (10, 3.4), (20, 3.3)])
    assert raised == [(0, TLevel.EVACUATE)] and status.level == TLevel.PREPARE  # 3.3 < 3.36


@pytest.mark.parametrize(("evaluated", "reading", "reason"), [
    (None, T0 - 31 * MIN, "stale"), (T0 - 40 * MIN, T0 - 31 * MIN, "stale"), (None, T0 + 6 * MIN, "future"),
    (T0 - 5 * MIN, T0 - 10 * MIN, "late"), (T0 - 5 * MIN, T0 - 5 * MIN, "late"),
])
def test_late_stale_and_future_readings_never_raise(evaluated: datetime | None, reading: datetime,
                                                    reason: str) -> None:
    now = T0
    status = Status(evaluated_at=evaluated)
    d = decide(status, wl(9.9), reading, now, TH)
    assert d.reason == reason and d.raise_level is None and d.status == status


def test_a_delayed_delivery_of_a_fresh_reading_still_counts() -> None:
    raised, _ = run([(0, 3.0), (10, 3.6)], lag=20)  # received 20 min late: within max_age
    assert raised == [(10, TLevel.PREPARE)]
    raised, _ = run([(0, 3.0), (10, 3.6)], lag=31)
    assert raised == []


readings = st.lists(st.tuples(st.integers(0, 600), st.floats(0, 6, allow_nan=False), st.integers(0, 40)),
                    max_size=60)


@settings(max_examples=400, deadline=None)
@given(readings)
def test_properties_of_any_reading_sequence(seq: list[tuple[int, float, int]]) -> None:
    status = Status()
    raises: list[tuple[datetime, TLevel]] = []
    newest: datetime | None = None
    for minute, v, lag in seq:
        at, now = T0 + minute * MIN, T0 + (minute + lag) * MIN
        d = decide(status, wl(v), at, now, TH)
        crossed, _ = level_of(wl(v), TH)
        if d.raise_level is not None:
            # Only a fresh reading can raise, at exactly the level its measure crossed,
            # and only above the level the station was at.
            assert newest is None or at > newest
            assert lag <= 30 and d.raise_level == crossed and d.raise_level > status.level
            # Hold-off: the same or a lower level is never raised twice within an hour.
            for t, lv in raises:
                assert d.raise_level > lv or at >= t + TH.hold_off or at < t
            raises.append((at, d.raise_level))
        if d.reason in ("late", "stale", "future"):
            assert d.status == status
        else:
            newest = at
            # The state never sits below what the measure crossed, nor above the band.
            band, _ = level_of(wl(v), TH, TH.clear_ratio)
            assert crossed <= d.status.level <= max(band, crossed)
        status = d.status


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(3.5, 6, allow_nan=False), min_size=1, max_size=50))
def test_a_storm_that_never_relents_raises_at_most_one_warning_per_level(values: list[float]) -> None:
    raised, _ = run([(i * 5, v) for i, v in enumerate(values)])
    levels = [lv for _, lv in raised]
    assert len(levels) == len(set(levels)) and levels == sorted(levels)
