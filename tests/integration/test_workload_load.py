"""A workload's county goes into a real database as generated (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import select

from devtools.workloads import load_county, w100
from warnd.db.engine import Database
from warnd.db.models import Person, Region, Speaker


async def test_a_county_of_the_province_loads_with_its_counts(db: Database) -> None:
    now = datetime(2026, 7, 1, tzinfo=UTC)
    work = w100(631, counties=3, overlapping=1, scale=0.1).counties[2].workload(now)
    counts = await load_county(db, work, now)
    async with db.read() as s:
        people = (await s.exec(select(func.count()).select_from(Person))).one()
        villages = (await s.exec(select(func.count()).select_from(Region).where(Region.level == "village"))).one()
        speakers = (await s.exec(select(func.count()).select_from(Speaker))).one()
    assert (people, villages, speakers) == (counts["officials"], counts["villages"], counts["speakers"])
    assert villages == 40
