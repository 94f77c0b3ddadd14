"""Read-only snapshot of regions and people for the pure planner, refreshed on demand."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlmodel import select

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
        root = self.root_code()
        return tuple(p for p in self.people if "duty_officer" in p.roles and p.region_code == root)

    def root_code(self) -> str | None:
        for r in self.regions.values():
            if r.level == Level.COUNTY:
                return r.code
        return None


class RosterCache:
    """Reloads at most every `ttl` seconds (real time) or when invalidated; a roster import
    may run in another process, so a short TTL is the invalidation across processes."""

    def __init__(self, db: Database, ttl: float = 30.0):
        self.db = db
        self.ttl = ttl
        self._snap: RosterSnapshot | None = None
        self._loaded = 0.0

    def invalidate(self) -> None:
        self._snap = None

    async def get(self) -> RosterSnapshot:
        if self._snap is None or time.monotonic() - self._loaded > self.ttl:
            self._snap = await self._load()
            self._loaded = time.monotonic()
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
        return RosterSnapshot(rviews, pviews, {p.id: p for p in pviews}, PeopleIndex.build(pviews))
