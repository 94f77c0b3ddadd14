"""A scaled clock survives restarts (issue 9, finding 5): `[clock] spec = "scaled:N"` is
anchored in the database, so a restarted engine continues the same timeline instead of
starting a new one from the current wall time."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from warnd.app import App
from warnd.clock import ScaledClock, clock_from_spec
from warnd.config import ClockCfg, DatabaseCfg, Settings
from warnd.db.models import ClockAnchor

WALL0 = 1_782_871_200.0  # 2026-07-01 02:00 UTC


class Wall:
    """Wall time that moves only when told (the process ran, the process was down)."""

    def __init__(self) -> None:
        self.t = WALL0

    def __call__(self) -> float:
        return self.t


async def start(db_url: str, spec: str, wall: Wall) -> App:
    settings = Settings(database=DatabaseCfg(url=db_url), clock=ClockCfg(spec=spec))
    app = App.build(settings, clock=clock_from_spec(settings.clock.spec, wall=wall), channels={})
    await app.start()
    return app


async def test_a_restart_continues_the_scaled_timeline(db_url: str) -> None:
    wall = Wall()
    first = await start(db_url, "scaled:60", wall)
    t0 = first.clock.now()
    deadline = t0 + timedelta(minutes=10)  # a rung due 10 clock minutes (10 wall seconds) on
    wall.t += 4  # the first process runs 4 s (4 clock minutes), then is killed
    await first.stop()
    wall.t += 3  # and is down for 3 s
    second = await start(db_url, "scaled:60", wall)
    try:
        assert second.clock.now() == t0 + timedelta(minutes=7)  # the same timeline, not a new one
        assert (deadline - second.clock.now()) == timedelta(minutes=3)  # 3 wall seconds to the rung
    finally:
        await second.stop()


async def test_a_new_speed_continues_from_where_the_timeline_stands(db_url: str) -> None:
    wall = Wall()
    first = await start(db_url, "scaled:60", wall)
    t0 = first.clock.now()
    wall.t += 10
    await first.stop()
    second = await start(db_url, "scaled:600", wall)  # 10 min in, now ten times faster
    try:
        assert second.clock.now() == t0 + timedelta(minutes=10)
        wall.t += 1
        assert second.clock.now() == t0 + timedelta(minutes=20)
        async with second.db.read() as s:
            [row] = (await s.exec(select(ClockAnchor))).all()
        assert (row.speed, row.origin, row.wall_origin) == (600, t0 + timedelta(minutes=10), WALL0 + 10)
    finally:
        await second.stop()


async def test_a_clock_given_with_its_anchors_is_left_alone(db_url: str) -> None:
    wall = Wall()
    clock = ScaledClock(60, wall=wall)
    spec = clock.spec()  # what a parent process hands its children: scaled:60:ORIGIN:WALL
    wall.t += 100
    app = await start(db_url, spec, wall)
    try:
        assert app.clock.now() == clock.now()
        async with app.db.read() as s:
            assert (await s.exec(select(ClockAnchor))).all() == []
    finally:
        await app.stop()
