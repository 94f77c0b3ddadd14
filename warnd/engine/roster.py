"""Read-only snapshot of regions and people for the pure planner, refreshed on demand."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import col, func, select

from warnd.core.domain import Level, PersonView, RegionView
from warnd.core.planner import PeopleIndex
from warnd.db.engine import Database
from warnd.db.models import Person, PersonExtraRole, Region


@dataclass(frozen=True)
class RosterSnapshot:
    regions: Mapping[str, RegionView]
    people: tuple[PersonView, ...]
    by_id: Mapping[int, PersonView]
    index: PeopleIndex

    def duty_officers(self) -> tuple[PersonView, ...]:
        return self._duty_officers

    @cached_property
    def _duty_officers(self) -> tuple[PersonView, ...]:
        # Once per snapshot: every call handed to the duty room asks (a storm: thousands).
        root = self.root_code()
        return tuple(p for p in self.people if "duty_officer" in p.roles and p.region_code == root)

    def root_code(self) -> str | None:
        for r in self.regions.values():
            if r.level == Level.COUNTY:
                return r.code
        return None


class RosterCache:
    """The roster snapshot, reloaded only when the roster changed. A roster import may run in
    another process or instance, so after `ttl` seconds (real time) a cheap fingerprint of the
    tables (row counts, newest `updated_at`, newest id) is compared with the loaded one; the
    county's ~5,000 people are reloaded only when it differs. A warning never waits for a
    reload of an unchanged roster (W1: ~0.3 s of its POST)."""

    def __init__(self, db: Database, ttl: float = 5.0):
        self.db = db
        self.ttl = ttl
        self._snap: RosterSnapshot | None = None
        self._print: tuple[object, ...] | None = None
        self._checked = 0.0
        self.loads = 0  # how many times the tables were read (tests, metrics)

    def invalidate(self) -> None:
        self._snap = None

    async def prime(self) -> None:
        """Load now (at start-up), so the first warning after a restart does not wait for the
        roster; the first `get` still compares fingerprints (rows seeded after start are seen)."""
        await self.get()
        self._checked = float("-inf")

    async def get(self) -> RosterSnapshot:
        if self._snap is not None and time.monotonic() - self._checked <= self.ttl:
            return self._snap
        async with self.db.read() as s:
            current = await _fingerprint(s)
        self._checked = time.monotonic()
        if self._snap is None or current != self._print:
            # The fingerprint is taken before the tables are read: a change in between is
            # loaded now and seen again (a second reload) at the next check, never missed.
            self._snap, self._print = await self._load(), current
            self.loads += 1
        return self._snap

    async def _load(self) -> RosterSnapshot:
        async with self.db.read() as s:
            regions = (await s.exec(select(Region))).all()
            people = (await s.exec(select(Person).where(Person.active == True))).all()  # noqa: E712
            extra = (await s.exec(select(PersonExtraRole).order_by(
                PersonExtraRole.person_id, PersonExtraRole.position))).all()  # type: ignore[arg-type]
        rviews = {
            r.code: RegionView(r.code, r.name, Level(r.level), r.parent_code, r.geometry_wkt)
            for r in regions
        }
        id_by_key = {p.key: p.id for p in people}
        extra_roles: dict[int, list[str]] = {}
        for er in extra:
            extra_roles.setdefault(er.person_id, []).append(er.role)
        pviews = tuple(
            PersonView(
                id=p.id or 0, name=p.name, phone=p.phone, role=p.role, region_code=p.region_code,
                deputy_id=id_by_key.get(p.deputy_key) if p.deputy_key else None,
                wecom_userid=p.wecom_userid, phone2=p.phone2,
                extra_roles=tuple(r for r in extra_roles.get(p.id or 0, ()) if r != p.role),
            )
            for p in people
        )
        # Read-only: caches keyed on this mapping (region index, area words) trust its identity.
        return RosterSnapshot(MappingProxyType(rviews), pviews, {p.id: p for p in pviews}, PeopleIndex.build(pviews))


async def _fingerprint(s: Any) -> tuple[object, ...]:
    """Changes whenever an import adds, edits, deactivates or re-roles anyone (each bumps
    `updated_at` or adds rows), in one round trip."""
    q = sa_select(
        select(func.count()).select_from(Person).scalar_subquery(),
        select(func.max(Person.updated_at)).scalar_subquery(),
        select(func.max(Person.id)).scalar_subquery(),
        select(func.count()).select_from(Region).scalar_subquery(),
        select(func.max(Region.updated_at)).scalar_subquery(),
        select(func.count()).select_from(PersonExtraRole).scalar_subquery(),
        select(func.sum(col(PersonExtraRole.person_id) * 8 + col(PersonExtraRole.position))).scalar_subquery(),
    )
    return tuple((await (await s.connection()).execute(q)).one())
