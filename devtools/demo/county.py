"""A generated county: the demo's (22 townships, 330 villages, 3,300+ officials) or any other
shape (the benchmark workloads in devtools/workloads.py: W1 is 20 townships, 400 villages).

Codes follow the national scheme (6-digit county, 9 township, 12 village; groups are our
15-digit convention). Every village has a secretary, head, grid worker(s), transfer officer,
monitor(s) and a leader per group; deputies pair the village's own officials.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import delete

from warnd.db.engine import Database
from warnd.db.models import Person, Region

COUNTY_CODE = "431222"
TOWNSHIPS = 22
VILLAGES_PER_TOWNSHIP = 15
GROUPS_PER_VILLAGE = 5


@dataclass(frozen=True)
class CountyShape:
    """How big a generated county is, and whose numbers it uses. `phone_offset` keeps the
    numbers of several generated counties apart (a province of them on one provider)."""

    townships: int = TOWNSHIPS
    villages_per_township: int = VILLAGES_PER_TOWNSHIP
    groups_per_village: int = GROUPS_PER_VILLAGE
    grid_workers_per_village: int = 1
    monitors_per_village: int = 1
    code: str = COUNTY_CODE
    name: str = "沅陵县"
    phone_offset: int = 0


DEMO_SHAPE = CountyShape()

WECOM_ROLES = frozenset({"county_leader_on_duty", "flood_hq_member", "township_liaison_leader",
                         "township_party_secretary", "township_head", "township_duty", "village_secretary"})

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉梅志红建国文斌海燕春林辉鹏飞婷雪琴云峰"
TOWN_NAMES = "官庄 马底驿 筲箕湾 五强溪 清浪 北溶 二酉 明溪口 凉水井 七甲坪 荔溪 麻溪铺 火场 杜家坪 大合坪 借母溪 楠木铺 郑家坪 沅陵镇 太常 陈家滩 棋坪".split()
VILLAGE_SUFFIX = "溪 坪 湾 冲 坳 岭 塘 口 坡 垭 田 洲 岩 寨 桥".split()


def _outline(t: int, v: int, rng: random.Random, rows: int = 3) -> str:
    """A made-up village outline (WKT, lon/lat): townships on a 6-wide grid, each 5 villages
    wide and `rows` deep, corners jittered so the audit report's village map looks like a map."""
    lon0, lat0 = 110.0 + (t % 6) * 0.15, 28.8 - (t // 6) * 0.04 * rows
    x0, y0 = lon0 + (v % 5) * 0.03, lat0 - (v // 5) * 0.04
    pts = [(x0, y0), (x0 + 0.03, y0), (x0 + 0.03, y0 - 0.04), (x0, y0 - 0.04)]
    pts = [(x + rng.uniform(-0.003, 0.003), y + rng.uniform(-0.003, 0.003)) for x, y in pts]
    return "POLYGON((" + ", ".join(f"{x:.4f} {y:.4f}" for x, y in [*pts, pts[0]]) + "))"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


class Phones:
    def __init__(self, offset: int = 0) -> None:
        self.n = offset

    def next(self) -> str:
        self.n += 1
        return f"+86139{self.n:08d}"


def county_rows(now: datetime, seed: int = 631, shape: CountyShape = DEMO_SHAPE) -> tuple[list[Region], list[Person]]:
    """The county's regions and officials, deterministic from `seed` (no I/O)."""
    rng = random.Random(seed)
    shape_rng = random.Random(seed + 7)  # its own stream: the officials stay the same
    phones = Phones(shape.phone_offset)
    county = shape.code
    rows = math.ceil(shape.villages_per_township / 5)
    regions: list[Region] = [Region(code=county, name=shape.name, level="county", updated_at=now)]
    people: list[Person] = []

    def person(role: str, region: str, deputy_of: Person | None = None) -> Person:
        phone = phones.next()
        # County, township and village leaders are on the county's WeCom (企业微信).
        wecom = f"wx{phone[-8:]}" if role in WECOM_ROLES else None
        p = Person(key=phone, name=_name(rng), phone=phone, role=role, region_code=region, updated_at=now,
                   wecom_userid=wecom)
        if deputy_of is not None:
            deputy_of.deputy_key = p.key
        people.append(p)
        return p

    for role, n in (("county_leader_on_duty", 2), ("flood_hq_member", 24), ("duty_officer", 3)):
        for _ in range(n):
            person(role, county)
    for t in range(shape.townships):
        tcode = f"{county}{100 + t:03d}"
        regions.append(Region(code=tcode, name=f"{TOWN_NAMES[t % len(TOWN_NAMES)]}{'镇' if t % 3 else '乡'}",
                              level="township", parent_code=county, updated_at=now))
        person("township_liaison_leader", tcode)
        sec = person("township_party_secretary", tcode)
        head = person("township_head", tcode, deputy_of=None)
        sec.deputy_key = head.key
        duty = person("township_duty", tcode)
        duty.deputy_key = head.key
        for v in range(shape.villages_per_township):
            vcode = f"{tcode}{200 + v:03d}"
            vname = (TOWN_NAMES[(t + v) % len(TOWN_NAMES)][:1] + rng.choice("上下东西南北大小")
                     + VILLAGE_SUFFIX[v % len(VILLAGE_SUFFIX)] + "村")
            regions.append(Region(code=vcode, name=vname, level="village", parent_code=tcode, updated_at=now,
                                  geometry_wkt=_outline(t, v, shape_rng, rows)))
            vsec = person("village_secretary", vcode)
            vhead = person("village_head", vcode, deputy_of=vsec)
            vhead.deputy_key = vsec.key
            for _ in range(shape.grid_workers_per_village):
                grid = person("grid_worker", vcode)
                grid.deputy_key = vhead.key
            transfer = person("transfer_officer", vcode)
            transfer.deputy_key = grid.key
            for _ in range(shape.monitors_per_village):
                mon = person("monitor", vcode)
                mon.deputy_key = grid.key
            for g in range(shape.groups_per_village):
                gcode = f"{vcode}{g + 1:03d}"
                regions.append(Region(code=gcode, name=f"{vname}{g + 1}组" if g >= 10 else
                                      f"{vname}{'一二三四五六七八九十'[g]}组",
                                      level="group", parent_code=vcode, updated_at=now))
                # A few groups have no leader on file: the demo shows the gap being reported.
                if rng.random() < 0.01:
                    continue
                leader = person("group_leader", gcode)
                leader.deputy_key = vhead.key
    return regions, people


async def generate_county(db: Database, now: datetime, seed: int = 631,
                          shape: CountyShape = DEMO_SHAPE) -> dict[str, int]:
    """Replace the database's regions and people with a generated county."""
    regions, people = county_rows(now, seed, shape)
    async with db.session() as s, s.begin():
        await s.exec(delete(Person))
        await s.exec(delete(Region))
        s.add_all(regions)
        s.add_all(people)
    return {"townships": shape.townships, "villages": shape.townships * shape.villages_per_township,
            "regions": len(regions), "officials": len(people)}
