"""A scaled clock that survives restarts: `[clock] spec = "scaled:N"` names a speed but no
anchors, so the engine keeps them in the database (table `clock_anchor`). The first start
stores "clock time `origin` was wall time `wall_origin`"; every later start, and every other
instance on the same database, continues that timeline instead of starting a new one from
the current wall time (which would push every pending deadline back by as long as the
previous process ran). A start with another speed continues the timeline from where it
stands at that moment, at the new speed.

A fresh database starts a fresh timeline. A clock given with its anchors
(`scaled:N:ORIGIN:WALL`) or a system clock is left alone.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from warnd.clock import Clock, ScaledClock, utcnow
from warnd.db.engine import Database
from warnd.db.models import ClockAnchor

log = structlog.get_logger("warnd.clock")

TIMELINE = "engine"


async def anchor_clock(db: Database, clock: Clock) -> None:
    """Give an unanchored ScaledClock the stored timeline, or store its own as the timeline."""
    if not isinstance(clock, ScaledClock) or clock.anchored:
        return
    async with db.session() as s, s.begin():
        conn = await s.connection()
        table = ClockAnchor.__table__  # type: ignore[attr-defined]
        ins = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
        await conn.execute(ins.values(name=TIMELINE, speed=clock.speed, origin=clock.origin,
                                      wall_origin=clock.wall_origin, updated_at=utcnow())
                           .on_conflict_do_nothing(index_elements=["name"]))
        row = (await s.exec(select(ClockAnchor).where(ClockAnchor.name == TIMELINE).with_for_update())).one()
        if row.speed != clock.speed:
            wall = clock.wall()
            at = row.origin + timedelta(seconds=(wall - row.wall_origin) * row.speed)
            log.info("clock timeline continues at a new speed", was=row.speed, speed=clock.speed, at=at.isoformat())
            row.origin, row.wall_origin, row.speed, row.updated_at = at, wall, clock.speed, utcnow()
            s.add(row)
        clock.anchor(row.origin, row.wall_origin, row.speed)
    log.info("clock timeline", speed=clock.speed, origin=clock.origin.isoformat(), now=clock.now().isoformat())
