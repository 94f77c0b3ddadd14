"""A generated county for the demo: 22 townships, 330 villages, 3,300+ officials.

Codes follow the national scheme (6-digit county, 9 township, 12 village; groups are our
15-digit convention). Every village has a secretary, head, grid worker, transfer officer,
monitor and five group leaders; deputies pair the village's own officials.
"""

from __future__ import annotations

import random
from datetime import datetime

from sqlmodel import delete

from warnd.db.engine import Database
from warnd.db.models import Person, Region

COUNTY_CODE = "431222"
TOWNSHIPS = 22
VILLAGES_PER_TOWNSHIP = 15
GROUPS_PER_VILLAGE = 5

WECOM_ROLES = frozenset({"county_leader_on_duty", "flood_hq_member", "township_liaison_leader",
                         "township_party_secretary", "township_head", "township_duty", "village_secretary"})

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉梅志红建国文斌海燕春林辉鹏飞婷雪琴云峰"
TOWN_NAMES = "官庄 马底驿 筲箕湾 五强溪 清浪 北溶 二酉 明溪口 凉水井 七甲坪 荔溪 麻溪铺 火场 杜家坪 大合坪 借母溪 楠木铺 郑家坪 沅陵镇 太常 陈家滩 棋坪".split()
VILLAGE_SUFFIX = "溪 坪 湾 冲 坳 岭 塘 口 坡 垭 田 洲 岩 寨 桥".split()


def _outline(t: int, v: int, rng: random.Random) -> str:
    """A made-up village outline (WKT, lon/lat): townships on a 6-wide grid, each 5 × 3 villages,
    corners jittered so the audit report's village map looks like a map."""
    lon0, lat0 = 110.0 + (t % 6) * 0.15, 28.8 - (t // 6) * 0.12
    x0, y0 = lon0 + (v % 5) * 0.03, lat0 - (v // 5) * 0.04
    pts = [(x0, y0), (x0 + 0.03, y0), (x0 + 0.03, y0 - 0.04), (x0, y0 - 0.04)]
    pts = [(x + rng.uniform(-0.003, 0.003), y + rng.uniform(-0.003, 0.003)) for x, y in pts]
    return "POLYGON((" + ", ".join(f"{x:.4f} {y:.4f}" for x, y in [*pts, pts[0]]) + "))"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


class Phones:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"+86139{self.n:08d}"


async def generate_county(db: Database, now: datetime, seed: int = 631) -> dict[str, int]:
    rng = random.Random(seed)
    shape_rng = random.Random(seed + 7)  # its own stream: the officials stay the same
    phones = Phones()
    regions: list[Region] = [Region(code=COUNTY_CODE, name="沅陵县", level="county", updated_at=now)]
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
            person(role, COUNTY_CODE)
    for t in range(TOWNSHIPS):
        tcode = f"{COUNTY_CODE}{100 + t:03d}"
        regions.append(Region(code=tcode, name=f"{TOWN_NAMES[t]}{'镇' if t % 3 else '乡'}",
                              level="township", parent_code=COUNTY_CODE, updated_at=now))
        person("township_liaison_leader", tcode)
        sec = person("township_party_secretary", tcode)
        head = person("township_head", tcode, deputy_of=None)
        sec.deputy_key = head.key
        duty = person("township_duty", tcode)
        duty.deputy_key = head.key
        for v in range(VILLAGES_PER_TOWNSHIP):
            vcode = f"{tcode}{200 + v:03d}"
            vname = TOWN_NAMES[(t + v) % len(TOWN_NAMES)][:1] + rng.choice("上下东西南北大小") + VILLAGE_SUFFIX[v] + "村"
            regions.append(Region(code=vcode, name=vname, level="village", parent_code=tcode, updated_at=now,
                                  geometry_wkt=_outline(t, v, shape_rng)))
            vsec = person("village_secretary", vcode)
            vhead = person("village_head", vcode, deputy_of=vsec)
            vhead.deputy_key = vsec.key
            grid = person("grid_worker", vcode)
            grid.deputy_key = vhead.key
            transfer = person("transfer_officer", vcode)
            transfer.deputy_key = grid.key
            mon = person("monitor", vcode)
            mon.deputy_key = grid.key
            for g in range(GROUPS_PER_VILLAGE):
                gcode = f"{vcode}{g + 1:03d}"
                regions.append(Region(code=gcode, name=f"{vname}{'一二三四五六七八九十'[g]}组",
                                      level="group", parent_code=vcode, updated_at=now))
                # A few groups have no leader on file: the demo shows the gap being reported.
                if rng.random() < 0.01:
                    continue
                leader = person("group_leader", gcode)
                leader.deputy_key = vhead.key
    async with db.session() as s, s.begin():
        await s.exec(delete(Person))
        await s.exec(delete(Region))
        s.add_all(regions)
        s.add_all(people)
    return {"townships": TOWNSHIPS, "villages": TOWNSHIPS * VILLAGES_PER_TOWNSHIP,
            "regions": len(regions), "officials": len(people)}
