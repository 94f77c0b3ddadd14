"""A generated public recipient list (危险区群众, 网格员, 扫码订阅, 游客) for the demo, the
benchmarks and the tests: a CSV with the Chinese headers counties use.

    write_public_list(path, villages, n=100_000, seed=631)
    report, seconds = await import_generated_list(db, path, n, now=now)   # written and imported

`villages` are (code, name, township name); numbers are unique mainland mobiles in a block
no official of the demo county uses (+86 137…). A few rows are bad on purpose when `bad` is
given (an empty number, a landline, an unknown village), so the import report has something
to say.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from sqlmodel import select

from warnd.db.engine import Database
from warnd.db.models import Region
from warnd.public.importer import ListReport, import_list

HEADER = ["序号", "姓名", "手机号码", "乡镇", "所属村", "行政区划代码", "名单类型", "来源", "同意日期", "转移地点"]
KINDS = [("危险区群众", "村委会摸排", 70), ("扫码订阅", "扫码订阅", 20), ("网格员", "网格化管理平台", 5),
         ("游客", "景区登记", 5)]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "明华建国军平志红伟芳秀英敏丽强磊洋勇艳杰娟涛超霞刚桂兰云"


def public_phone(i: int) -> str:
    """The i-th generated public number (E.164)."""
    return f"+86137{i:08d}"


def write_public_list(path: Path, villages: Sequence[tuple[str, str, str]], n: int, seed: int = 631,
                      bad: int = 0) -> list[tuple[str, str]]:
    """Write `n` good rows (+ `bad` bad ones) and return (phone, village code) of the good rows."""
    rng = random.Random(seed)
    weights = [w for _, _, w in KINDS]
    out: list[tuple[str, str]] = []
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["某县公众预警信息接收名单"])  # a title row above the header, as counties keep them
        w.writerow(HEADER)
        for i in range(n):
            code, name, township = villages[i % len(villages)]
            kind, source, _ = rng.choices(KINDS, weights)[0]
            phone = public_phone(i)
            person = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
            consent = f"2026-0{rng.randint(3, 6)}-{rng.randint(10, 28)}" if kind == "扫码订阅" else ""
            w.writerow([i + 1, person, phone[3:], township, name, code, kind, source, consent,
                        f"{name}村部" if kind == "危险区群众" else ""])
            out.append((phone, code))
        for j in range(bad):
            code, name, township = villages[j % len(villages)]
            row = [["", "0745-2345678", "1380000"][j % 3], name, code][0]
            w.writerow([n + j + 1, "坏行", row, township, name if j % 3 != 2 else "不存在村", "" if j % 3 == 2 else code,
                        "危险区群众", "村委会摸排", "", ""])
    return out


def village_rows(regions: Iterable[Region]) -> list[tuple[str, str, str]]:
    """(code, name, township name) of every village, by code: what write_public_list takes."""
    by_code = {r.code: r for r in regions}
    return [(r.code, r.name, by_code[r.parent_code].name if r.parent_code in by_code else "")
            for r in sorted(by_code.values(), key=lambda r: r.code) if r.level == "village"]


async def import_generated_list(db: Database, path: Path, n: int, *, now: datetime,
                                seed: int = 631) -> tuple[ListReport, float]:
    """Write a list of `n` numbers over the database's villages to `path` and import it as an
    operator would (`warnd public import`'s importer); the import report and its seconds."""
    async with db.read() as s:
        regions = (await s.exec(select(Region))).all()
    write_public_list(path, village_rows(regions), n, seed)
    started = time.monotonic()
    report = await import_list(db, path, now=now)
    return report, time.monotonic() - started
