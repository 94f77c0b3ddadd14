"""The benchmark workloads of issue 15, generated deterministically from a seed.

W1, "one county storm": 20 townships, 400 villages, 2,000 groups, ~5,300 officials, 4,365
village loudspeakers and 100,000 public recipients, hit by a red heavy-rain 631 sequence
(forecast → warning → imminent, each an Update of the one before); 70 % of officials confirm
inside their window, the rest stay silent and escalate.

W100, "a province": 100 such counties (codes 430001…, numbers kept apart) sharing one
PostgreSQL server (a database per county: jurisdictions separated) and one MQTT broker, with
the storms of ten counties overlapping and the other ninety spread over the day.

    w = w1(seed=631)                       # pure: the county, the storm, who answers when
    counts = await load_county(db, w, now)  # the county's regions, people and speakers
    p = w100(seed=631, counties=4, overlapping=2)   # the reduced scale this machine can run

Public recipients are a count: bench/w1.py generates their list (devtools/demo/public_list.py)
and imports it through warnd's public list importer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert

from devtools.demo.county import CountyShape, county_rows
from warnd.db.engine import Database
from warnd.db.models import Person, Region, Speaker

W1_SHAPE = CountyShape(townships=20, villages_per_township=20, groups_per_village=5,
                       grid_workers_per_village=3, monitors_per_village=2)
W1_SPEAKERS = 4365
W1_PUBLIC = 100_000
W1_CONFIRM_SHARE = 0.70
PROVINCE_CODE = "43"  # county codes 430001… (made-up: real 6-digit codes are not contiguous)
NOT_CALLED = frozenset({"duty_officer"})  # the duty room is told, not called


@dataclass(frozen=True)
class StormStep:
    offset: timedelta  # from the storm's start
    step: str  # 631 step: forecast | warning | imminent
    colour: str  # 黄色 | 橙色 | 红色
    msg_type: str  # Alert (the first) | Update
    headline: str
    instruction: str


RED_RAIN_631 = (
    StormStep(timedelta(0), "forecast", "黄色", "Alert", "未来6小时将出现暴雨", "请县防指成员和包乡领导做好部署。"),
    StormStep(timedelta(hours=3), "warning", "橙色", "Update", "3小时内将出现大暴雨", "请乡镇做好转移准备。"),
    StormStep(timedelta(hours=5), "imminent", "红色", "Update", "1小时内将出现特大暴雨，山洪风险极高",
              "请立即组织危险区群众转移，鸣锣吹哨，敲门入户。"),
)


@dataclass(frozen=True)
class Answer:
    """How one official answers a step: confirm after `fraction` of the window, or never."""

    phone: str
    confirms: bool
    fraction: float  # of the confirm window (0..1) when confirms


@dataclass
class CountyWorkload:
    seed: int
    shape: CountyShape
    regions: list[Region]
    people: list[Person]
    speakers: list[tuple[str, str]]  # (device id, region code)
    public_recipients: int
    storm: tuple[StormStep, ...] = RED_RAIN_631
    storm_start: timedelta = timedelta(0)  # offset within the province's day (W100)
    confirm_share: float = W1_CONFIRM_SHARE

    @property
    def code(self) -> str:
        return self.shape.code

    def counts(self) -> dict[str, int]:
        levels = [r.level for r in self.regions]
        return {"townships": levels.count("township"), "villages": levels.count("village"),
                "groups": levels.count("group"), "officials": len(self.people),
                "speakers": len(self.speakers), "public_recipients": self.public_recipients}

    def answers(self, step: str) -> list[Answer]:
        """Who confirms `step` and when, deterministic from the seed and the step: a share
        `confirm_share` of the called officials confirm inside their window, the rest never."""
        rng = random.Random(f"{self.seed}:{self.code}:{step}")
        out = []
        for p in self.people:
            if p.role in NOT_CALLED:
                continue
            confirms = rng.random() < self.confirm_share
            out.append(Answer(p.phone, confirms, round(rng.uniform(0.05, 0.9), 3) if confirms else 0.0))
        return out


def speaker_places(regions: list[Region], total: int, prefix: str = "YL") -> list[tuple[str, str]]:
    """`total` loudspeakers spread over the villages (one each first, then over the groups,
    round robin), as devtools.demo.loudspeakers.seed_speakers places them."""
    codes = sorted((r.code, r.level) for r in regions if r.level in ("village", "group"))
    places = [c for c, lv in codes if lv == "village"] + [c for c, lv in codes if lv == "group"]
    return [(f"{prefix}-{i + 1:05d}", places[i % len(places)]) for i in range(total)] if places else []


def county_workload(seed: int, now: datetime, shape: CountyShape = W1_SHAPE, speakers: int = W1_SPEAKERS,
                    public: int = W1_PUBLIC, storm_start: timedelta = timedelta(0)) -> CountyWorkload:
    regions, people = county_rows(now, seed, shape)
    return CountyWorkload(seed, shape, regions, people, speaker_places(regions, speakers, f"S{shape.code}"),
                          public, storm_start=storm_start)


def w1(seed: int = 631, now: datetime | None = None) -> CountyWorkload:
    """W1: one county storm."""
    return county_workload(seed, now or datetime(2026, 7, 1, tzinfo=UTC))


@dataclass(frozen=True)
class CountyPlan:
    """One county of a province: enough to generate it when its instance starts."""

    index: int
    seed: int
    shape: CountyShape
    speakers: int
    public: int
    storm_start: timedelta

    @property
    def code(self) -> str:
        return self.shape.code

    def workload(self, now: datetime) -> CountyWorkload:
        return county_workload(self.seed, now, self.shape, self.speakers, self.public, self.storm_start)


@dataclass
class Province:
    seed: int
    counties: list[CountyPlan] = field(default_factory=list)

    @property
    def overlapping(self) -> list[str]:
        """Codes of the counties whose storms start within the same ten minutes."""
        return [c.code for c in self.counties if c.storm_start < timedelta(minutes=10)]


def county_code(i: int) -> str:
    return f"{PROVINCE_CODE}{i + 1:04d}"


def w100(seed: int = 631, counties: int = 100, overlapping: int = 10, scale: float = 1.0) -> Province:
    """W100: `counties` W1-shaped counties; the storms of `overlapping` of them start within
    the same ten minutes, the others one after another over the following day, so no two
    of those share a busy step. `scale` < 1 shrinks every county (villages per township,
    speakers, public) so that a reduced province runs on a small machine."""
    if not 0 <= overlapping <= counties:
        raise ValueError("overlapping must be between 0 and the number of counties")
    if not 0 < scale <= 1:
        raise ValueError("scale must be in (0, 1]")
    rng = random.Random(seed)
    together = set(rng.sample(range(counties), overlapping))
    villages = max(1, round(W1_SHAPE.villages_per_township * scale))
    others = max(counties - overlapping, 1)
    province = Province(seed)
    spread = 0
    for i in range(counties):
        shape = CountyShape(townships=W1_SHAPE.townships, villages_per_township=villages,
                            groups_per_village=W1_SHAPE.groups_per_village,
                            grid_workers_per_village=W1_SHAPE.grid_workers_per_village,
                            monitors_per_village=W1_SHAPE.monitors_per_village,
                            code=county_code(i), name=f"模拟{i + 1:03d}县", phone_offset=i * 100_000)
        if i in together:
            start = timedelta(seconds=rng.randrange(600))
        else:
            spread += 1
            start = timedelta(minutes=10) + timedelta(hours=24) * spread / others
        province.counties.append(CountyPlan(i, seed * 1000 + i, shape, round(W1_SPEAKERS * scale),
                                            round(W1_PUBLIC * scale), start))
    return province


async def load_county(db: Database, work: CountyWorkload, now: datetime) -> dict[str, int]:
    """Replace the database's regions, people and loudspeakers with the workload's county."""
    regions = [r.model_dump() | {"updated_at": now} for r in work.regions]
    people = [p.model_dump(exclude={"id"}) | {"updated_at": now} for p in work.people]
    speakers = [dict(device_id=d, region_code=c, capabilities=["tts"], lon=None, lat=None, active=True, online=None,
                     state_reason=None, state_at=None, last_seen_at=None, updated_at=now) for d, c in work.speakers]
    async with db.session() as s, s.begin():
        conn = await s.connection()
        for table in (Speaker, Person, Region):
            await conn.execute(delete(table))
        for table, rows in ((Region, regions), (Person, people), (Speaker, speakers)):
            for i in range(0, len(rows), 2000):
                await conn.execute(insert(table), rows[i:i + 2000])
    return work.counts()

