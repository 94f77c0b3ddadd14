"""The injectable clocks: waiting on clock time, waking early on events, speed changes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from warnd.clock import ManualClock, ScaledClock, clock_from_spec


async def test_manual_clock_wakes_waiters_only_when_time_is_reached() -> None:
    clock = ManualClock(datetime(2026, 7, 1, tzinfo=UTC))
    waiter = asyncio.create_task(clock.wait_until(clock.now() + timedelta(minutes=10)))
    await clock.advance(timedelta(minutes=9))
    await asyncio.sleep(0)  # let the waiter observe the move (a yield, not a timing sleep)
    assert not waiter.done()
    await clock.advance(timedelta(minutes=1))
    await asyncio.wait_for(waiter, 1)


async def test_manual_clock_wait_returns_on_wake_event() -> None:
    clock = ManualClock()
    wake = asyncio.Event()
    waiter = asyncio.create_task(clock.wait_until(None, wake))
    wake.set()
    await asyncio.wait_for(waiter, 1)
    assert clock.now() == ManualClock().now()  # time did not move


async def test_scaled_clock_runs_fast_and_honours_a_speed_change() -> None:
    clock = ScaledClock(1000)
    t0, w0 = clock.now(), time.monotonic()

    async def slow_down() -> None:
        await clock.wait_until(t0 + timedelta(seconds=50))
        clock.set_speed(100)

    slower = asyncio.create_task(slow_down())
    await clock.wait_until(t0 + timedelta(seconds=150))
    await slower
    real = time.monotonic() - w0
    # 50 s at ×1000 (0.05 s) then 100 s at ×100 (1 s): had the sleeper kept the old speed it
    # would have returned after 0.15 s.
    assert 0.9 < real < 3
    assert clock.now() - t0 >= timedelta(seconds=150)


def test_clock_spec_round_trips_so_a_child_process_shares_the_timeline() -> None:
    clock = ScaledClock(60, origin=datetime(2026, 7, 1, tzinfo=UTC), wall_origin=1_800_000_000.0)
    again = clock_from_spec(clock.spec())
    assert isinstance(again, ScaledClock)
    assert (again.speed, again.origin, again.wall_origin) == (60, clock.origin, clock.wall_origin)
