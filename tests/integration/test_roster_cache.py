"""The roster snapshot is reloaded when the roster changed (an import in another process), and
only then: a warning does not wait for ~5,000 people to be read again every half minute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from warnd.db.engine import Database
from warnd.db.models import Person, PersonExtraRole, Region
from warnd.engine.roster import RosterCache

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    d = Database(db_url)
    await d.upgrade()
    async with d.session() as s, s.begin():
        s.add(Region(code="431222", name="沅陵县", level="county", updated_at=T0))
        s.add(Region(code="431222001", name="官庄镇", level="township", parent_code="431222", updated_at=T0))
        s.add(Person(key="a", name="甲", phone="+8613900000001", role="township_head", region_code="431222001",
                     updated_at=T0))
    yield d
    await d.close()


async def test_an_unchanged_roster_is_not_read_again(db: Database) -> None:
    cache = RosterCache(db, ttl=0)  # every get looks at the fingerprint
    first = await cache.get()
    for _ in range(3):
        assert await cache.get() is first
    assert cache.loads == 1


async def test_every_kind_of_import_change_is_seen(db: Database) -> None:
    cache = RosterCache(db, ttl=0)
    snap = await cache.get()
    assert [p.name for p in snap.people] == ["甲"]

    async with db.session() as s, s.begin():  # an edit (the importer bumps updated_at)
        p = (await s.exec(select(Person))).one()
        p.phone, p.updated_at = "+8613900000009", T0 + timedelta(minutes=1)
    snap = await cache.get()
    assert snap.people[0].phone == "+8613900000009"

    async with db.session() as s, s.begin():  # a second role, from another process
        pid = (await s.exec(select(Person.id))).one()
        s.add(PersonExtraRole(person_id=pid, role="village_head", position=1))
    snap = await cache.get()
    assert snap.people[0].extra_roles == ("village_head",)

    async with db.session() as s, s.begin():  # someone new
        s.add(Person(key="b", name="乙", phone="+8613900000002", role="grid_worker", region_code="431222001",
                     updated_at=T0))
    assert {p.name for p in (await cache.get()).people} == {"甲", "乙"}

    async with db.session() as s, s.begin():  # a region
        s.add(Region(code="431222002", name="五强溪镇", level="township", parent_code="431222", updated_at=T0))
    assert "431222002" in (await cache.get()).regions
    assert cache.loads == 5


async def test_within_its_ttl_the_snapshot_is_served_without_a_query(db: Database) -> None:
    cache = RosterCache(db, ttl=3600)
    first = await cache.get()
    async with db.session() as s, s.begin():
        s.add(Person(key="b", name="乙", phone="+8613900000002", role="grid_worker", region_code="431222001",
                     updated_at=T0))
    assert await cache.get() is first  # seen at the next check, not on every warning
    cache.invalidate()
    assert len((await cache.get()).people) == 2


async def test_a_primed_cache_still_sees_rows_written_after_start(db: Database) -> None:
    cache = RosterCache(db, ttl=3600)
    await cache.prime()  # at start-up, before the county is loaded
    async with db.session() as s, s.begin():
        s.add(Person(key="b", name="乙", phone="+8613900000002", role="grid_worker", region_code="431222001",
                     updated_at=T0))
    assert len((await cache.get()).people) == 2
    assert await cache.get() is await cache.get()
