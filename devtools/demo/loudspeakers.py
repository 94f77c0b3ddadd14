"""What the demo (or any drill script) needs to show loudspeakers: register a fleet on the
generated county, start simulated speakers for it, and summarise coverage per step.

    ids = await seed_speakers(db, total=4365, now=clock.now())
    fleet = await start_fleet(ids, host=..., port=..., failure_rate=0.03, offline_share=0.02)
    ...  # App built with Settings(speakers=SpeakersCfg(enabled=True, ...))
    print(await loudspeaker_summary(db))
    await fleet.stop()
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import select

from devtools.simulators.speakers import SpeakerFleet, start_fleet
from warnd.db.engine import Database
from warnd.db.models import Region, Speaker
from warnd.speakers.coverage import coverage_by_step, fleet_health

__all__ = ["SpeakerFleet", "loudspeaker_summary", "seed_speakers", "start_fleet"]


async def seed_speakers(db: Database, total: int, now: datetime, prefix: str = "YL") -> list[str]:
    """Register `total` speakers spread over the villages (one each first, then on their
    groups, round robin). Idempotent: ids are PREFIX-00001...; existing ones are kept."""
    async with db.session() as s:
        rows = (await s.exec(select(Region.code, Region.level).where(
            Region.level.in_(["village", "group"])).order_by(Region.code))).all()  # type: ignore[attr-defined]
        have = set((await s.exec(select(Speaker.device_id))).all())
    villages = [c for c, lv in rows if lv == "village"]
    groups = [c for c, lv in rows if lv == "group"]
    if not villages:
        return []
    places = villages + groups
    ids: list[str] = []
    new: list[dict[str, Any]] = []
    for i in range(total):
        device_id = f"{prefix}-{i + 1:05d}"
        ids.append(device_id)
        if device_id not in have:
            new.append(dict(device_id=device_id, region_code=places[i % len(places)], capabilities=["tts"],
                            lon=None, lat=None, active=True, online=None, state_reason=None, state_at=None,
                            last_seen_at=None, updated_at=now))
    if new:
        async with db.session() as s, s.begin():
            await (await s.connection()).execute(insert(Speaker), new)
    return ids


async def loudspeaker_summary(db: Database, now: datetime | None = None,
                              stale_after_seconds: float = 180) -> dict[str, Any]:
    """JSON-ready: loudspeaker coverage per 631 step, and fleet health when `now` is given."""
    out: dict[str, Any] = {"steps": {}}
    for step, cov in (await coverage_by_step(db)).items():
        d = asdict(cov)
        d["village_ratio"] = round(cov.village_ratio, 4)
        d["not_reached"] = len(cov.not_reached)
        out["steps"][step] = d
    if now is not None:
        h = await fleet_health(db, now, stale_after_seconds)
        out["fleet"] = {"total": h.total, "online": h.online, "offline": h.offline, "stale": h.stale,
                        "never_seen": h.never_seen}
    return out
