"""One contract for every piece of background work, and one loop that runs it.

A module (the outbox, escalation, expiry, loudspeakers, feed polling, telemetry evaluation)
keeps its due work in the database and exposes:

- `step()`: do one batch of due work; True when it did something (the loop steps again at
  once, so a backlog drains before the module sleeps);
- `next_due()`: when work next falls due, in clock time (None: only when woken);
- `wake`: set by `Runner.kick()` after a change that may have created work;
- `poll_seconds`: look again after this many real seconds even if nobody woke the module
  (work written by another process or instance sends no wake); None: never;
- `start()`: once before the first pass (e.g. the outbox reconciles sends left in doubt).

`run_module` owns what every loop needs and none should rewrite: wake handling, waiting
until the next due time, a timeout on a pass, backoff after an error (in real time: clock
time may be frozen in tests or racing in drills), a warning for a slow pass, and per-pass
timing and lateness (`ModuleStats`, exported as metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from warnd.clock import Clock

log = structlog.get_logger("warnd.engine")

ERROR_BACKOFF_SECONDS = 1.0
# Work is due but the pass could do none of it: another instance holds it right now (its rows
# are locked and skipped). Look again after this pause instead of spinning.
HELD_ELSEWHERE_SECONDS = 0.2
PASS_TIMEOUT_SECONDS = 300.0  # a pass that hangs this long is abandoned (and retried)
SLOW_PASS_SECONDS = 5.0


class Module(Protocol):
    wake: asyncio.Event

    @property
    def name(self) -> str: ...

    @property
    def poll_seconds(self) -> float | None: ...

    async def start(self) -> None: ...

    async def step(self) -> bool: ...

    async def next_due(self) -> datetime | None: ...


class ModuleBase:
    """Defaults for the optional parts of the contract."""

    name = "module"
    poll_seconds: float | None = None

    def __init__(self) -> None:
        self.wake = asyncio.Event()

    async def start(self) -> None:
        return None

    async def next_due(self) -> datetime | None:
        return None


@dataclass
class ModuleStats:
    """Per-module counters and timings (the metrics issue exports them)."""

    passes: int = 0  # completed passes (a pass = steps until idle, then next_due)
    steps: int = 0  # steps that did work
    errors: int = 0
    timeouts: int = 0
    slow_passes: int = 0
    last_pass_seconds: float = 0.0
    max_pass_seconds: float = 0.0
    total_pass_seconds: float = 0.0
    last_lateness_seconds: float = 0.0  # clock time between due and the pass that handled it
    max_lateness_seconds: float = 0.0
    last_error: str | None = None
    running: bool = False
    busy: bool = False  # in a pass (or starting)
    next_due: datetime | None = None  # what the module is waiting for (clock time)


async def run_module(module: Module, clock: Clock, stats: ModuleStats | None = None, *,
                     error_backoff: float = ERROR_BACKOFF_SECONDS,
                     pass_timeout: float = PASS_TIMEOUT_SECONDS,
                     slow_pass: float = SLOW_PASS_SECONDS,
                     notify: Callable[[], None] = lambda: None) -> None:
    """Run `module` until cancelled. `notify` is called whenever the module starts or ends a
    pass (Runner.settle waits on it)."""
    stats = stats if stats is not None else ModuleStats()
    stats.running = stats.busy = True
    notify()
    try:
        while True:
            try:
                await module.start()
                break
            except Exception as e:
                stats.errors += 1
                stats.last_error = f"{type(e).__name__}: {e}"
                log.exception("module start failed; retrying", module=module.name)
                await asyncio.sleep(error_backoff)
        due: datetime | None = None
        while True:
            module.wake.clear()
            if not stats.busy:
                stats.busy = True
                notify()
            if due is not None:
                late = max((clock.now() - due).total_seconds(), 0.0)
                stats.last_lateness_seconds = late
                stats.max_lateness_seconds = max(stats.max_lateness_seconds, late)
            started = time.monotonic()
            steps_before = stats.steps
            try:
                async with asyncio.timeout(pass_timeout):
                    while await module.step():
                        stats.steps += 1
                    due = await module.next_due()
            except TimeoutError:
                stats.timeouts += 1
                stats.last_error = f"pass exceeded {pass_timeout:g} s"
                log.error("module pass timed out; retrying", module=module.name, seconds=pass_timeout)
                due = None
                await asyncio.sleep(error_backoff)
                continue
            except Exception as e:
                # A database hiccup or a bug: say so, back off in real time, try the whole pass again.
                stats.errors += 1
                stats.last_error = f"{type(e).__name__}: {e}"
                log.exception("module pass failed; retrying", module=module.name)
                due = None
                await asyncio.sleep(error_backoff)
                continue
            took = time.monotonic() - started
            stats.passes += 1
            stats.last_pass_seconds = took
            stats.max_pass_seconds = max(stats.max_pass_seconds, took)
            stats.total_pass_seconds += took
            if took > slow_pass:
                stats.slow_passes += 1
                log.warning("slow module pass", module=module.name, seconds=round(took, 3))
            stats.busy, stats.next_due = False, due
            notify()
            if stats.steps == steps_before and due is not None and due <= clock.now():
                await asyncio.sleep(HELD_ELSEWHERE_SECONDS)
            await _wait(module, clock, due)
    finally:
        stats.running = stats.busy = False
        notify()


async def _wait(module: Module, clock: Clock, due: datetime | None) -> None:
    if module.poll_seconds is None:
        await clock.wait_until(due, module.wake)
        return
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives
    # as the wait ends (the poll timer and a stop at once), and the module never stops.
    try:
        async with asyncio.timeout(module.poll_seconds):
            await clock.wait_until(due, module.wake)
    except TimeoutError:
        pass


class Runner:
    """Runs a set of modules as tasks; `kick()` wakes them all after a change."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.modules: list[Module] = []
        self.stats: dict[str, ModuleStats] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    def add(self, *modules: Module) -> None:
        for m in modules:
            if m.name in self.stats:
                raise ValueError(f"two modules named {m.name!r}")
            self.modules.append(m)
            self.stats[m.name] = ModuleStats()

    def kick(self) -> None:
        for m in self.modules:
            m.wake.set()

    def start(self) -> None:
        self._tasks += [asyncio.create_task(run_module(m, self.clock, self.stats[m.name], notify=self._notify),
                                            name=m.name) for m in self.modules]

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def idle(self) -> bool:
        """Every module waiting, none woken, none with work due by the clock."""
        now = self.clock.now()
        return all(not st.busy and not m.wake.is_set() and (st.next_due is None or st.next_due > now)
                   for m, st in ((m, self.stats[m.name]) for m in self.modules))

    async def settle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until every module has done what is due and waits (tests and drills on a manual
        clock: after moving the clock, wait for the engine to catch up). Event-driven: each
        module reports the start and end of its passes."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                if self.idle():
                    await asyncio.sleep(0)  # let a task woken by the same change run first
                    if self.idle() and changed is self._changed:
                        return
                    continue
                await changed.wait()

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A long-lived task that is not a module (a transport's connection loop), stopped with
        the modules."""
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
