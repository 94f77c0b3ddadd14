"""Injectable time.

Everything in the engine reads time through a Clock so a 6-hour 631 sequence can run in
seconds. Deadlines are stored in the database in clock time; workers wait with
`wait_until`, which returns early when `wake` is set (new work arrived).

- SystemClock: real time.
- ScaledClock: virtual = origin + speed × (wall − wall_origin). Anchored on wall time, so a
  process that is killed and restarted with the same anchors continues the same timeline.
  `scaled:N` alone names no anchors: the engine keeps them in the database
  (warnd.engine.timeline) and every restart, and every instance, continues that timeline.
- ManualClock: tests move time explicitly with `advance`; waiters wake on the event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def wait_until(self, when: datetime | None, wake: asyncio.Event | None = None) -> None:
        """Return at `when` (clock time), or earlier if `wake` is set. None: wait for wake."""
        ...


async def _wait_event(wake: asyncio.Event | None, seconds: float | None) -> None:
    if wake is None:
        if seconds is None:
            await asyncio.Event().wait()  # nothing can wake us: block until cancelled
        else:
            await asyncio.sleep(max(seconds, 0))
        return
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives
    # as the wait ends, and a stopping task would then wait forever.
    try:
        async with asyncio.timeout(None if seconds is None else max(seconds, 0)):
            await wake.wait()
    except TimeoutError:
        pass


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    async def wait_until(self, when: datetime | None, wake: asyncio.Event | None = None) -> None:
        timeout = None if when is None else (when - self.now()).total_seconds()
        await _wait_event(wake, timeout)


class ScaledClock:
    def __init__(self, speed: float, origin: datetime | None = None, wall_origin: float | None = None, *,
                 wall: Callable[[], float] = time.time):
        """`origin` and `wall_origin` anchor the timeline; without them it starts now, and
        `anchored` is False until `anchor()` gives it the stored ones. `wall`: wall time (tests)."""
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.wall = wall
        self.anchored = origin is not None and wall_origin is not None
        self.wall_origin = self.wall() if wall_origin is None else wall_origin
        self.origin = origin or datetime.fromtimestamp(self.wall_origin, UTC)
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=(self.wall() - self.wall_origin) * self.speed)

    def anchor(self, origin: datetime, wall_origin: float, speed: float | None = None) -> None:
        """Continue the timeline these anchors name (a restart, another instance)."""
        self.origin, self.wall_origin = origin, wall_origin
        self.speed = self.speed if speed is None else speed
        self.anchored = True
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def set_speed(self, speed: float) -> None:
        """Change speed from now on (the demo slows down for its busiest step). Sleepers
        wake and re-compute their real-time wait."""
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.origin, self.wall_origin, self.speed = self.now(), self.wall(), speed
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, when: datetime | None, wake: asyncio.Event | None = None) -> None:
        while True:
            changed = self._changed
            timeout = None if when is None else (when - self.now()).total_seconds() / self.speed
            if timeout is not None and timeout <= 0:
                return
            waiters = [asyncio.ensure_future(changed.wait())]
            if wake is not None:
                waiters.append(asyncio.ensure_future(wake.wait()))
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if (wake is not None and wake.is_set()) or not changed.is_set():
                return  # woken, or the time has come

    def spec(self) -> str:
        """Serialised form for --clock, so a child process shares this timeline."""
        return f"scaled:{self.speed}:{self.origin.isoformat()}:{self.wall_origin}"


class ManualClock:
    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def advance(self, delta: timedelta | float) -> None:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now += delta
        async with self._moved:
            self._moved.notify_all()

    async def wait_until(self, when: datetime | None, wake: asyncio.Event | None = None) -> None:
        async def until_time() -> None:
            async with self._moved:
                await self._moved.wait_for(lambda: when is not None and self._now >= when)

        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(until_time())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()


def speed_of(clock: Clock) -> float:
    """Clock seconds per wall second (a ManualClock moves only when told: 1)."""
    return float(getattr(clock, "speed", 1.0))


def clock_from_spec(spec: str | None, *, wall: Callable[[], float] = time.time) -> Clock:
    """`system` (default), `scaled:SPEED` (anchored in the database when the engine starts) or
    `scaled:SPEED:ORIGIN_ISO:WALL_ORIGIN`."""
    if not spec or spec == "system":
        return SystemClock()
    kind, _, rest = spec.partition(":")
    if kind == "scaled":
        parts = rest.split(":", 1)
        speed = float(parts[0])
        if len(parts) == 1:
            return ScaledClock(speed, wall=wall)
        origin_s, _, wall_s = parts[1].rpartition(":")
        return ScaledClock(speed, datetime.fromisoformat(origin_s), float(wall_s), wall=wall)
    raise ValueError(f"unknown clock spec {spec!r}; use 'system' or 'scaled:SPEED'")
