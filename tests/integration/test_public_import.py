"""Public recipient lists imported from CSV and XLSX with Chinese headers (warnd.public), on
SQLite and PostgreSQL: rows found by village names or codes, bad rows reported in Chinese,
re-imports, opt-outs kept across them, 100,000 rows in well under a minute."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlmodel import func, select

from devtools.demo.public_list import write_public_list
from support.public_stack import COUNTY, GA, REGIONS, VA, VB, VC  # the same small county
from warnd.cli import main as warnd_main
from warnd.db.engine import Database
from warnd.db.models import Event, PublicOptOut, PublicRecipient, Region
from warnd.public.importer import import_list
from warnd.public.lists import ListError
from warnd.public.optouts import opted_out, set_choice

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


async def _regions(db: Database, regions: list[Region] = REGIONS) -> None:
    async with db.session() as s, s.begin():
        s.add_all([Region(**r.model_dump()) for r in regions])


def _csv(path: Path, rows: list[str], encoding: str = "utf-8-sig") -> Path:
    path.write_text("\n".join(rows) + "\n", encoding=encoding)
    return path


async def _all(db: Database) -> list[PublicRecipient]:
    async with db.read() as s:
        return list((await s.exec(select(PublicRecipient).order_by(PublicRecipient.phone))).all())


async def test_a_county_sheet_with_chinese_headers_is_imported_and_bad_rows_reported(db: Database, tmp_path: Path) -> None:
    await _regions(db)
    f = _csv(tmp_path / "官庄镇危险区群众.csv", [
        "官庄镇山洪危险区群众名单,,,,,,",
        "序号,户主姓名,手机号码,乡镇（街道）,所属村,村民小组,名单类型,同意日期,转移地点",
        "1,张三,138 0000 0001,官庄镇,辰龙关村,一组,危险区群众,,辰龙关村部",
        "2,李四,13800000002,官庄镇,界亭驿,,扫码订阅,2026年5月1日,",
        "3,王五,0745-2345678,官庄镇,辰龙关村,,危险区群众,,",
        "4,赵六,13800000004,官庄镇,不存在村,,危险区群众,,",
        "5,钱七,13800000005,官庄镇,辰龙关村,,外星人,2026-13-01,",
        "6,孙八,138 0000 0001,官庄镇,辰龙关村,一组,危险区群众,,",
        "7,周九,1.38E+10,马底驿镇,沿溪村,,,,",
    ], encoding="gb18030")
    report = await import_list(db, f, now=NOW)
    got = {r.phone: r for r in await _all(db)}
    assert set(got) == {"+8613800000001", "+8613800000002"}
    a, b = got["+8613800000001"], got["+8613800000002"]
    assert (a.region_code, a.village_code, a.kind, a.shelter, a.name) == (GA, VA, "danger_zone", "辰龙关村部", "张三")
    assert (b.region_code, b.kind, b.consent_date, b.source) == (VB, "subscriber", "2026-05-01", "官庄镇危险区群众")
    assert report.added == 2 and len(report.rejected) == 5
    why = {r.row: r.reasons for r in report.rejected}
    assert "固定电话" in why[5][0]
    assert "找不到“官庄镇不存在村”" in why[6][0]
    assert any("名单类型“外星人”" in x for x in why[7]) and any("同意日期“2026-13-01”" in x for x in why[7])
    assert "与官庄镇危险区群众第3行重复" in why[8][0]
    assert "科学计数法" in why[9][0]
    text = report.text()
    assert "新增 2" in text and "未导入 5 行" in text and "固定电话" in text
    assert "13800000004" not in text and "138****0004" in json.dumps(report.as_json(), ensure_ascii=False)


async def test_xlsx_and_re_import_update_and_deactivate_but_keep_opt_outs(db: Database, tmp_path: Path) -> None:
    await _regions(db)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["手机号", "姓名", "行政区划代码", "类别", "来源"])
    ws.append([13800000011, "甲", VA, "网格员", "网格平台"])
    ws.append(["13800000012", "乙", VC, "游客", "景区登记"])
    ws.append(["13800000013", "丙", VC, "施工人员", ""])
    path = tmp_path / "list.xlsx"
    wb.save(path)
    first = await import_list(db, path, now=NOW)
    assert (first.added, first.rejected) == (3, [])
    async with db.session() as s, s.begin():
        assert await set_choice(s, "+8613800000012", True, NOW, "api", "wangzb")
    # The same file again: nothing changes; then 丙 leaves and 乙's source changes.
    again = await import_list(db, path, now=NOW)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    ws.delete_rows(4)
    ws["E3"] = "景区实名登记"
    wb.save(path)
    third = await import_list(db, path, now=NOW, deactivate_missing=True)
    assert (third.added, third.updated, third.unchanged, third.deactivated) == (0, 1, 1, 1)
    rows = {r.phone: r for r in await _all(db)}
    assert rows["+8613800000013"].active is False and rows["+8613800000012"].source == "景区实名登记"
    async with db.read() as s:
        assert await opted_out(s) == {"+8613800000012"}  # a re-import never subscribes anyone again
        kinds = (await s.exec(select(Event.kind).where(Event.kind.like("public_%")))).all()  # type: ignore[attr-defined]
        data = (await s.exec(select(Event.data).where(Event.kind == "public_opted_out"))).one()
    assert kinds.count("public_list_imported") == 3 and data["phone"] == "138****0012"


async def test_unusable_files_are_refused_in_chinese(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ListError, match="行政区划"):
        await import_list(db, _csv(tmp_path / "a.csv", ["手机号码,所属村", "13800000001,辰龙关村"]), now=NOW)
    await _regions(db)
    with pytest.raises(ListError, match="找不到表头"):
        await import_list(db, _csv(tmp_path / "b.csv", ["姓名,村", "张三,辰龙关村"]), now=NOW)
    with pytest.raises(ListError, match="不支持的文件类型"):
        await import_list(db, _csv(tmp_path / "c.doc", ["x"]), now=NOW)


async def test_100000_rows_import_in_well_under_a_minute(db: Database, tmp_path: Path) -> None:
    villages = [(f"431222{t:03d}{v:03d}", f"村{t}-{v}", f"镇{t}") for t in range(100, 110) for v in range(200, 230)]
    regions = [Region(code=COUNTY, name="县", level="county")]
    regions += [Region(code=f"431222{t:03d}", name=f"镇{t}", level="township", parent_code=COUNTY)
                for t in range(100, 110)]
    regions += [Region(code=c, name=n, level="village", parent_code=c[:9]) for c, n, _ in villages]
    await _regions(db, regions)
    path = tmp_path / "public.csv"
    write_public_list(path, villages, 100_000, bad=3)
    report = await import_list(db, path, now=NOW)  # how fast: bench/bench_public.py
    assert report.added == 100_000 and len(report.rejected) == 3 and report.villages == 300
    again = await import_list(db, path, now=NOW)  # re-import: every row compared, nothing written
    assert again.unchanged == 100_000
    async with db.read() as s:
        assert (await s.exec(select(func.count()).select_from(PublicRecipient))).one() == 100_000


def test_the_command_line_reports_in_chinese(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> None:
        db = Database(db_url)
        try:
            await _regions(db)
        finally:
            await db.close()

    async def kinds() -> list[str]:
        db = Database(db_url)
        try:
            async with db.read() as s:
                assert (await s.exec(select(func.count()).select_from(PublicOptOut))).one() == 0
                return list((await s.exec(select(PublicRecipient.kind))).all())
        finally:
            await db.close()

    asyncio.run(setup())
    f = _csv(tmp_path / "订阅.csv", ["手机号码,所属村", "13800000001,辰龙关村", ",界亭驿村"])
    assert warnd_main(["public", "import", str(f), "--database", db_url, "--kind", "subscriber"]) == 1
    out = capsys.readouterr().out
    assert "新增 1" in out and "手机号码为空" in out and "订阅第3行" in out
    assert warnd_main(["public", "import", str(tmp_path / "nope.csv"), "--database", db_url]) == 2
    assert asyncio.run(kinds()) == ["subscriber"]
