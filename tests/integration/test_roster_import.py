"""Roster import (warnd.roster): every test that touches the database runs on SQLite and
PostgreSQL through the `db` fixture."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from support.samples import sample
from warnd.db.engine import Database
from warnd.db.models import Event, Person, Region
from warnd.roster import ImportReport, RosterError, Severity, format_report, import_roster
from warnd.roster.cells import CellError, normalise_code

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 6, 2, 9, 30, tzinfo=UTC)

REGIONS_HEADER = ["行政区划代码", "名称", "上级代码", "级别", "经度", "纬度", "边界WKT"]
PEOPLE_HEADER = ["编号", "姓名", "手机号码", "职务", "行政区划代码", "所属村组", "替补人", "企业微信账号", "在岗"]

# A tiny county used by most tests: county, one township, one village, two groups.
SMALL_REGIONS = [
    ["行政区划代码", "名称"],
    ["430999", "示例县"],
    ["430999100", "青山镇"],
    ["430999100201", "石门村"],
    ["430999100201001", "一组"],
    ["430999100201002", "二组"],
]


def write_csv(path: Path, rows: Sequence[Sequence[object]], encoding: str = "utf-8") -> Path:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


async def load(db: Database, path: Path, now: datetime = T0, **kw: Any) -> ImportReport:
    return await import_roster(db, path, now=now, **kw)


async def people(db: Database) -> dict[str, Person]:
    async with db.session() as s:
        return {p.key: p for p in (await s.exec(select(Person))).all()}


async def regions(db: Database) -> dict[str, Region]:
    async with db.session() as s:
        return {r.code: r for r in (await s.exec(select(Region))).all()}


def reasons_by_row(report: ImportReport, kind: str) -> dict[int, str]:
    return {r.row: r.reason for r in report.rejections if r.kind == kind}


def counts(report: ImportReport, kind: str) -> tuple[int, int, int, int]:
    c = report.regions if kind == "regions" else report.people
    return c.added, c.updated, c.unchanged, c.rejected


async def seed_small(db: Database, tmp_path: Path) -> None:
    report = await load(db, write_csv(tmp_path / "small-regions.csv", SMALL_REGIONS))
    assert counts(report, "regions") == (5, 0, 0, 0)


# --- pure parsing ----------------------------------------------------------------------------


def test_national_twelve_digit_codes_shorten_to_our_convention() -> None:
    assert normalise_code("430999000000") == "430999"
    assert normalise_code("430999100000") == "430999100"
    assert normalise_code("430999100201") == "430999100201"
    with pytest.raises(CellError, match="以000结尾"):
        normalise_code("430999100201000")
    with pytest.raises(CellError, match=r"位数不对.*43099910：8位"):
        normalise_code("43099910")


# --- samples ---------------------------------------------------------------------------------


async def test_the_samples_in_config_import_cleanly_and_agree(db: Database) -> None:
    r1 = await load(db, sample("regions-sample.csv"))
    r2 = await load(db, sample("roster-sample.csv"))
    assert (r1.ok, r2.ok) == (True, True), format_report(r1) + format_report(r2)
    assert counts(r1, "regions") == (10, 0, 0, 0)
    assert counts(r2, "people") == (19, 0, 0, 0)
    # The XLSX sample holds both sheets and the same data: everything is unchanged.
    r3 = await load(db, sample("roster-sample.xlsx"), now=T1)
    assert r3.ok
    assert counts(r3, "regions") == (0, 0, 10, 0)
    assert counts(r3, "people") == (0, 0, 19, 0)
    assert r3.ignored_sheets == ["说明"]

    # 赵敏 has only a landline: imported, with a warning that SMS can never reach her.
    assert [(n.row, n.problem.code) for n in r2.warnings] == [(5, "landline_only")]
    ppl = await people(db)
    assert (ppl["SL003"].phone, ppl["SL003"].phone2) == ("", "+867451234567")
    assert ppl["SL004"].phone == "+8613800000004"  # "+86 138-0000-0004"
    assert ppl["SL010"].region_code == "430999100201"  # 所属村组 "石门村"
    assert ppl["SL010"].deputy_key == "SL011"  # 替补人 by name
    assert ppl["SL012"].deputy_key == "SL013"  # 替补人 by phone
    assert ppl["SL016"].region_code == "430999100201001"  # "石门村一组", not 枫树村's 一组
    assert ppl["SL001"].deputy_key == "SL002"  # deputy comes later in the file
    assert ppl["SL001"].wecom_userid == "liguoqiang"
    assert ppl["SL001"].role == "county_leader_on_duty"
    assert all(p.updated_at == T0 for p in ppl.values())
    regs = await regions(db)
    assert regs["430999100201"].geometry_wkt is not None
    assert regs["430999100201"].geometry_wkt.startswith("POLYGON")
    assert regs["430999"].geometry_wkt == "POINT (110.39 28.45)"


async def test_xlsx_with_both_sheets_imports_in_one_go(db: Database) -> None:
    path = sample("roster-sample.xlsx")
    report = await load(db, path)
    assert report.ok
    assert counts(report, "regions") == (10, 0, 0, 0)
    assert counts(report, "people") == (19, 0, 0, 0)
    assert [(s.sheet, s.kind, s.header_row) for s in report.sheets] == [
        ("区划", "regions", 2),
        ("责任人", "people", 2),
    ]
    regs = await regions(db)
    assert regs["430999100201001"].parent_code == "430999100201"
    assert regs["430999100201001"].level == "group"


# --- formats ---------------------------------------------------------------------------------


async def test_xlsx_people_sheet_before_regions_sheet_numbers_as_numbers(db: Database, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "人员"  # people first: regions must still be applied before them
    ws.append(["青山镇责任人名单"])
    ws.append([])
    ws.append(["姓名", "手机", "岗位", "区划代码", "备注"])
    ws.append(["张三", 13800000001, "村支书", 430999100201, "新任"])  # Excel stores these as numbers
    ws.append(["李四", 13800000002.0, "组长", 430999100201001, None])
    ws.append([None, None, None, None, None])  # formatted but empty row
    ws.append(["王五", "13800000003", "乡长", "430999100", None])
    regs = wb.create_sheet("Sheet2")
    regs.append(["区划代码", "区划名称", "级别"])
    regs.append([430999, "示例县", "县"])
    regs.append([430999100, "青山镇", "镇"])
    regs.append([430999100201, "石门村", "村"])
    regs.append([430999100201001, "一组", "组"])
    path = tmp_path / "名单.xlsx"
    wb.save(path)

    report = await load(db, path)
    assert report.ok, format_report(report)
    assert counts(report, "regions") == (4, 0, 0, 0)
    assert counts(report, "people") == (3, 0, 0, 0)
    assert report.sheets[0].header_row == 3
    assert report.sheets[0].ignored_columns == ("备注",)
    ppl = await people(db)
    assert set(ppl) == {"+8613800000001", "+8613800000002", "+8613800000003"}  # phone is the key
    assert ppl["+8613800000002"].region_code == "430999100201001"
    assert ppl["+8613800000003"].role == "township_head"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
async def test_csv_encodings_excel_writes(db: Database, tmp_path: Path, encoding: str) -> None:
    await seed_small(db, tmp_path)
    rows = [
        ["姓名", "手机号码", "职务", "所属村组"],
        ["黄志明", "13800000010", "村支书", "石门村"],
        ["梁桂花", "13800000017", "村民小组长", "石门村二组"],
    ]
    report = await load(db, write_csv(tmp_path / f"{encoding}.csv", rows, encoding))
    assert report.ok, format_report(report)
    assert counts(report, "people") == (2, 0, 0, 0)
    ppl = await people(db)
    assert ppl["+8613800000010"].name == "黄志明"
    assert ppl["+8613800000017"].region_code == "430999100201002"


async def test_title_rows_and_alias_headers(db: Database, tmp_path: Path) -> None:
    regions_rows = [
        ["示例县行政区划", "", ""],
        ["（2026年汛前更新）", "", ""],
        ["编码", "村名", "备注"],
        ["430999", "示例县", ""],
        ["430999100", "青山镇", ""],
        ["430999100201", "石门村", "山洪危险区"],
    ]
    r = await load(db, write_csv(tmp_path / "r.csv", regions_rows))
    assert r.ok
    assert (r.sheets[0].kind, r.sheets[0].header_row, r.sheets[0].ignored_columns) == ("regions", 3, ("备注",))
    people_rows = [
        ["示例县防汛责任人名单"],
        ["* 姓名", "联系电话（必填）", "职责", "所在村组", "AB岗", "企业微信", "状态"],
        ["黄志明", "13800000010", "村党支部书记", "石门村", "马红梅", "hzm", "在岗"],
        ["马红梅", "13800000011", "村委会主任", "石门村", "黄志明", "", "离岗"],
    ]
    p = await load(db, write_csv(tmp_path / "p.csv", people_rows))
    assert p.ok, format_report(p)
    assert p.sheets[0].header_row == 2
    ppl = await people(db)
    hzm, mhm = ppl["+8613800000010"], ppl["+8613800000011"]
    assert (hzm.role, hzm.region_code, hzm.deputy_key, hzm.wecom_userid, hzm.active) == (
        "village_secretary", "430999100201", "+8613800000011", "hzm", True,
    )
    assert (mhm.role, mhm.deputy_key, mhm.wecom_userid, mhm.active) == (
        "village_head", "+8613800000010", None, False,
    )


async def test_a_file_without_a_header_row_is_refused(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [["foo", "bar"], ["1", "2"]])
    with pytest.raises(RosterError, match="没有找到表头行"):
        await load(db, path)
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(RosterError, match=r"\.xls"):
        await load(db, xls)


# --- rejections ------------------------------------------------------------------------------


async def test_each_people_rejection_reason_with_its_row_number(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    async with db.session() as s, s.begin():  # a second 一组 makes "一组" ambiguous
        s.add(Region(code="430999100202", name="枫树村", level="village", parent_code="430999100"))
        s.add(Region(code="430999100202001", name="一组", level="group", parent_code="430999100202"))
    rows = [
        ["青山镇责任人名单"],  # row 1
        PEOPLE_HEADER,  # row 2
        ["A01", "好人", "13800000001", "村支书", "430999100201", "", "", "", ""],  # 3 ok
        ["A02", "", "13800000002", "村支书", "430999100201", "", "", "", ""],  # 4 no name
        ["A03", "坏号", "1380000", "村支书", "430999100201", "", "", "", ""],  # 5 bad phone
        ["A04", "怪职", "13800000004", "村霸", "430999100201", "", "", "", ""],  # 6 unknown role
        ["A05", "错级", "13800000005", "村支书", "430999100", "", "", "", ""],  # 7 village role at township
        ["A06", "组长错", "13800000006", "组长", "430999100201", "", "", "", ""],  # 8 group role at village
        ["A07", "无区", "13800000007", "村支书", "430999100299", "", "", "", ""],  # 9 unknown code
        ["A01", "重复", "13800000008", "网格员", "430999100201", "", "", "", ""],  # 10 duplicate key
        ["A10", "歧义", "13800000010", "组长", "", "一组", "", "", ""],  # 11 ambiguous place
        ["A11", "无名地", "13800000011", "组长", "", "桃花村一组", "", "", ""],  # 12 unknown place
        ["A12", "坏码", "13800000012", "网格员", "43099910020", "", "", "", ""],  # 13 malformed code
        ["A14", "怪状态", "13800000014", "网格员", "430999100201", "", "", "", "也许"],  # 14
        ["A15", "坏企微", "13800000015", "网格员", "430999100201", "", "", "张 三", ""],  # 15
        ["A16", "无区划", "13800000016", "网格员", "", "", "", "", ""],  # 16 no region at all
        ["A17", "两人", "13800000017/13900000017", "网格员", "430999100201", "", "", "", ""],  # 17
        ["A18", "服务号", "400-123-4567", "网格员", "430999100201", "", "", "", ""],  # 18
        ["A19", "无区号", "4221234", "网格员", "430999100201", "", "", "", ""],  # 19
        ["A20", "科学计数", "1.38E+10", "网格员", "430999100201", "", "", "", ""],  # 20
    ]
    report = await load(db, write_csv(tmp_path / "bad.csv", rows))
    got = {r.row: (r.codes, r.reason) for r in report.rejections}
    expected = {
        4: ("name_missing", "缺少姓名"),
        5: ("phone_invalid", "手机号码不是有效的手机号或固定电话（1380000）"),
        6: ("role_unknown", "职务不认识"),
        7: ("role_level", "村级职务不能填在乡镇：需要12位村代码（村支书：青山镇）"),
        8: ("role_level", "组级职务不能填在村：需要15位组代码（组长：青山镇石门村）"),
        9: ("region_unknown", "行政区划代码在本县不存在（数据库和本文件里都没有）（430999100299）"),
        10: ("key_duplicate", "编号重复：只导入了第一次出现的那一行（A01，同第3行）"),
        11: ("place_ambiguous", "这个名称对应多个区划"),
        12: ("place_unknown", "找不到这个名称对应的乡镇、村或组（桃花村一组）"),
        13: ("code_length", "行政区划代码位数不对"),
        14: ("active_invalid", "在岗只能填 是/否、在岗/离岗（也许）"),
        15: ("wecom_invalid", "企业微信账号格式不对"),
        16: ("region_missing", "缺少所在区划：行政区划代码和所属村组都是空的"),
        17: ("phone_several_mobiles", "一格里有两个手机号"),
        18: ("phone_not_personal", "不是个人电话"),
        19: ("phone_no_area_code", "固定电话缺少区号"),
        20: ("phone_scientific", "科学计数法"),
    }
    assert set(got) == set(expected)
    for row, (code, fragment) in expected.items():
        assert got[row][0] == (code,), (row, got[row])
        assert fragment in got[row][1], (row, got[row])
    assert "（一组：青山镇石门村一组、青山镇枫树村一组）" in got[11][1]
    assert counts(report, "people") == (1, 0, 0, 17)
    assert set(await people(db)) == {"A01"}  # only the good row; bad rows left nothing behind
    assert all(r.sheet == "bad.csv" for r in report.rejections)
    text = format_report(report)
    assert "  第7、8行：" not in text  # two level problems of different levels do not merge
    assert "  第7行：村级职务不能填在乡镇：需要12位村代码（村支书：青山镇）" in text


async def test_rows_with_the_same_reason_are_reported_together(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    rows = [["姓名", "手机号码", "职务", "行政区划代码"]]
    rows += [[f"人{i}", f"1380000{i:04d}", "网格员", "430999100201"] for i in range(2, 13)]  # rows 2-12
    for row, code in ((5, "430999100299"), (9, "430999100298"), (13, "430999100299")):
        rows.insert(row - 1, [f"错{row}", f"1390000{row:04d}", "网格员", code])
    rows += [["合计", "", "", ""], ["填表说明：职务按防汛职务填写", "", "", ""]]
    report = await load(db, write_csv(tmp_path / "p.csv", rows))
    assert counts(report, "people") == (11, 0, 0, 3)
    lines = format_report(report).splitlines()
    assert "  第5、9、13行：行政区划代码在本县不存在（数据库和本文件里都没有）（430999100299、430999100298）" in lines
    assert "  第16、17行：合计、小计、说明、备注等行，已跳过（合计、填表说明:职务按防汛职务…）" in lines
    assert [(n.row, n.problem.code) for n in report.skipped] == [(16, "summary_row"), (17, "summary_row")]


async def test_a_row_with_several_problems_reports_them_all(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    rows = [["姓名", "手机号码", "职务", "行政区划代码"], ["", "12", "村霸", "430999100201"]]
    report = await load(db, write_csv(tmp_path / "p.csv", rows))
    (rej,) = report.rejections
    assert rej.row == 2
    assert rej.codes == ("name_missing", "phone_invalid", "role_unknown")


async def test_each_region_rejection_reason_with_its_row_number(db: Database, tmp_path: Path) -> None:
    rows = [
        REGIONS_HEADER,  # 1
        ["430999", "示例县", "", "县", "", "", ""],  # 2 ok
        ["430999100", "青山镇", "", "", "110.4", "28.4", ""],  # 3 ok, parent derived
        ["4309991", "坏码", "", "", "", "", ""],  # 4 malformed
        ["430999200", "白水乡", "430998", "", "", "", ""],  # 5 parent not the code's prefix
        ["430999100201", "石门村", "", "乡", "", "", ""],  # 6 level vs length
        ["430888100", "外县镇", "", "", "", "", ""],  # 7 parent missing
        ["430888100201", "外县村", "", "", "", "", ""],  # 8 parent rejected (row 7)
        ["430999100202", "枫树村", "", "", "28.4", "110.4", ""],  # 9 swapped coordinates
        ["430999100203", "河口村", "", "", "", "", "POLYGON ((110 28, 111 29, 111 28, 110 29, 110 28))"],  # 10 self-intersecting
        ["430999100204", "桥头村", "", "", "", "", "POLYGON ((110 28, 111"],  # 11 not WKT
        ["430999100", "青山镇重复", "", "", "", "", ""],  # 12 duplicate code
        ["430999100205", "", "", "", "", "", ""],  # 13 missing name
        ["430999100206", "半坐标村", "", "", "110.4", "", ""],  # 14 only longitude
    ]
    report = await load(db, write_csv(tmp_path / "regions.csv", rows))
    got = reasons_by_row(report, "regions")
    expected = {
        4: "行政区划代码位数不对：县6位、乡镇9位、村12位、组15位（村代码加3位组号）（4309991：7位）",
        5: "上级代码与代码不符：上级代码是本代码去掉最后3位（430998，应为430999）",
        6: "级别与代码位数不符（430999100201是12位，填的是“乡”）",
        7: "上级区划不存在（数据库和本文件里都没有）：请先导入上级区划（430888）",
        8: "上级区划的那一行没有导入（430888100，第7行）",
        9: "坐标不在中国境内：经度和纬度是否填反了？（28.4, 110.4）",
        10: "边界WKT多边形无效（边界自相交等）（Self-intersection",
        11: "边界WKT不是有效的 WKT",
        12: "行政区划代码重复，只导入了第一次出现的那一行（430999100，同第3行）",
        13: "缺少名称",
        14: "经度和纬度要一起填",
    }
    assert set(got) == set(expected)
    for row, fragment in expected.items():
        assert fragment in got[row], (row, got[row])
    assert counts(report, "regions") == (2, 0, 0, 11)
    regs = await regions(db)
    assert set(regs) == {"430999", "430999100"}
    assert regs["430999100"].parent_code == "430999"
    assert regs["430999100"].geometry_wkt == "POINT (110.4 28.4)"


async def test_person_at_a_rejected_region_says_so(db: Database, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["行政区划代码", "名称"])
    ws.append(["430999", "示例县"])
    ws.append(["430999100", "青山镇"])
    ws.append(["430999100201", ""])  # rejected: no name
    pw = wb.create_sheet("人员")
    pw.append(["姓名", "手机号码", "职务", "行政区划代码"])
    pw.append(["黄志明", "13800000010", "村支书", "430999100201"])
    pw.append(["孙伟", "13800000006", "镇长", "430999100"])
    wb.save(tmp_path / "both.xlsx")
    report = await load(db, tmp_path / "both.xlsx")
    assert counts(report, "regions") == (2, 0, 0, 1)
    assert counts(report, "people") == (1, 0, 0, 1)
    rej = report.rejected("people")[0]
    assert (rej.sheet, rej.row) == ("人员", 2)
    assert rej.reason == "所在区划的那一行没有导入（430999100201，「Sheet」表第4行）"


async def test_a_deputy_that_resolves_to_nobody_is_a_warning_naming_the_row(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    rows = [
        ["编号", "姓名", "手机号码", "职务", "行政区划代码", "替补人"],
        ["B1", "甲", "13800000001", "村支书", "430999100201", "B2"],  # 2: deputy B2 is rejected below
        ["B2", "乙", "1380000", "村主任", "430999100201", ""],  # 3: rejected, bad phone
        ["B3", "丙", "13800000003", "网格员", "430999100201", "B9"],  # 4: B9 does not exist
        ["B4", "丁", "13800000004", "网格员", "430999100201", "B4"],  # 5: themself
        ["B5", "戊", "13800000005", "网格员", "430999100201", "13800000003"],  # 6: by phone
        ["B6", "己", "13800000006", "组长", "430999100201001", "丁"],  # 7: by name
    ]
    report = await load(db, write_csv(tmp_path / "p.csv", rows))
    assert counts(report, "people") == (5, 0, 0, 1)  # only B2 is rejected: a deputy never costs a row
    warned = {n.row: (n.problem.code, n.problem.detail) for n in report.warnings}
    assert warned == {2: ("deputy_rejected", "B2，第3行"), 4: ("deputy_not_found", "B9"), 5: ("deputy_self", "B4")}
    ppl = await people(db)
    assert {k: p.deputy_key for k, p in ppl.items()} == {
        "B1": None, "B3": None, "B4": None, "B5": "B3", "B6": "B4"}
    assert "  第4行：替补人找不到（本文件和数据库里都没有这个编号、电话或姓名），未设替补人（B9）" in format_report(report)


# --- upsert ----------------------------------------------------------------------------------


async def test_reimport_is_unchanged_and_changes_are_updates(db: Database, tmp_path: Path) -> None:
    await load(db, sample("regions-sample.csv"))
    roster = sample("roster-sample.csv")
    assert counts(await load(db, roster), "people") == (19, 0, 0, 0)
    again = await load(db, roster, now=T1)
    assert counts(again, "people") == (0, 0, 19, 0)
    assert again.not_in_file == 0

    with roster.open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for row in rows:
        if row[0] == "SL013":
            row[2] = "139 0000 0013"  # new phone
            row[3] = "转移责任人"  # new role
        if row[0] == "SL012":
            row[6] = "SL013"  # it named its deputy by the old phone
        if row[0] == "SL007":
            row[1] = "周丽娟"  # corrected name
    changed = await load(db, write_csv(tmp_path / "changed.csv", rows), now=T1)
    assert changed.ok
    assert counts(changed, "people") == (0, 2, 17, 0)
    ppl = await people(db)
    assert (ppl["SL013"].phone, ppl["SL013"].role, ppl["SL013"].updated_at) == (
        "+8613900000013", "transfer_officer", T1,
    )
    assert (ppl["SL007"].name, ppl["SL007"].updated_at) == ("周丽娟", T1)
    assert ppl["SL001"].updated_at == T0  # unchanged rows keep their timestamp
    assert (ppl["SL012"].deputy_key, ppl["SL012"].updated_at) == ("SL013", T0)


async def test_region_updates_and_absent_columns_keep_stored_values(db: Database, tmp_path: Path) -> None:
    await load(db, sample("regions-sample.csv"))
    rows = [["行政区划代码", "名称"], ["430999100201", "石门村委会"], ["430999100202", "枫树村"]]
    report = await load(db, write_csv(tmp_path / "rename.csv", rows), now=T1)
    assert counts(report, "regions") == (0, 1, 1, 0)
    regs = await regions(db)
    assert (regs["430999100201"].name, regs["430999100201"].updated_at) == ("石门村委会", T1)
    # No geometry columns in this file: the stored boundary stays.
    assert regs["430999100201"].geometry_wkt is not None
    # A present but empty geometry cell clears it.
    rows = [["行政区划代码", "名称", "经度", "纬度"], ["430999", "示例县", "", ""]]
    report = await load(db, write_csv(tmp_path / "clear.csv", rows), now=T1)
    assert counts(report, "regions") == (0, 1, 0, 0)
    assert (await regions(db))["430999"].geometry_wkt is None


async def test_absent_people_are_kept_unless_deactivation_is_asked(db: Database, tmp_path: Path) -> None:
    await load(db, sample("regions-sample.csv"))
    await load(db, sample("roster-sample.csv"))
    with sample("roster-sample.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r[0] not in ("SL018", "SL019")]
    rows.append(["SL019", "", "bad", "组长", "", "", "", "", ""])  # listed but rejected: not missing
    partial = write_csv(tmp_path / "partial.csv", rows)

    kept = await load(db, partial, now=T1)
    assert (kept.not_in_file, kept.deactivated) == (1, 0)
    assert "数据库里有、本文件里没有的责任人：1人（仍保持在岗）" in format_report(kept)
    assert all(p.active for p in (await people(db)).values())

    gone = await load(db, partial, now=T1, deactivate_missing=True)
    assert (gone.not_in_file, gone.deactivated) == (1, 1)
    ppl = await people(db)
    assert (ppl["SL018"].active, ppl["SL018"].updated_at) == (False, T1)
    assert ppl["SL019"].active  # its row was rejected, so it is not treated as missing
    assert len(ppl) == 19  # nobody deleted

    # A regions-only file says nothing about people: nobody is missing from it.
    regions_only = await load(db, sample("regions-sample.csv"), deactivate_missing=True)
    assert (regions_only.not_in_file, regions_only.deactivated) == (None, 0)


# --- transaction and scale -------------------------------------------------------------------


async def _install_failing_trigger(db: Database) -> None:
    """A database-side failure on one person's INSERT, which no validation can foresee."""
    async with db.engine.begin() as conn:
        if db.is_sqlite:
            await conn.execute(text(
                "CREATE TRIGGER fail_import BEFORE INSERT ON people WHEN NEW.name = '故障' "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ))
        else:
            await conn.execute(text(
                "CREATE FUNCTION fail_import() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.name = '故障' THEN RAISE EXCEPTION 'injected failure'; END IF; "
                "RETURN NEW; END $$"
            ))
            await conn.execute(text(
                "CREATE TRIGGER fail_import BEFORE INSERT ON people "
                "FOR EACH ROW EXECUTE FUNCTION fail_import()"
            ))


async def test_a_failing_write_rolls_back_the_whole_import(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    first = [["编号", "姓名", "手机号码", "职务", "行政区划代码"], ["C1", "甲", "13800000001", "村支书", "430999100201"]]
    await load(db, write_csv(tmp_path / "first.csv", first))
    await _install_failing_trigger(db)

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["行政区划代码", "名称"])
    ws.append(["430999200", "白水乡"])  # a new region, written before the people
    ws.append(["430999100201", "石门村（改名）"])  # an update
    pw = wb.create_sheet("人员")
    pw.append(["编号", "姓名", "手机号码", "职务", "行政区划代码"])
    pw.append(["C1", "甲", "13900000001", "村主任", "430999100201"])  # an update
    pw.append(["C2", "乙", "13800000002", "网格员", "430999100201"])  # a new person
    pw.append(["C3", "故障", "13800000003", "网格员", "430999100201"])  # the database refuses this one
    wb.save(tmp_path / "crash.xlsx")

    with pytest.raises(DBAPIError, match="injected failure"):
        await load(db, tmp_path / "crash.xlsx", now=T1)

    regs = await regions(db)
    assert "430999200" not in regs
    assert regs["430999100201"].name == "石门村"
    ppl = await people(db)
    assert set(ppl) == {"C1"}
    assert (ppl["C1"].phone, ppl["C1"].role, ppl["C1"].updated_at) == ("+8613800000001", "village_secretary", T0)
    async with db.session() as s:
        events = (await s.exec(select(Event).where(Event.kind == "roster_imported"))).all()
    assert len(events) == 2  # the two earlier imports; the failed one left no trace


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


def _big_county(folder: Path, n_people: int) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    region_rows: list[list[object]] = [["行政区划代码", "名称"], ["430999", "示例县"]]
    groups: list[str] = []
    for t in range(1, 6):
        town = f"430999{100 + t}"
        region_rows.append([town, f"{t}镇"])
        for v in range(1, 11):
            village = f"{town}{200 + v}"
            region_rows.append([village, f"{t}镇{v}村"])
            for g in range(1, 11):
                groups.append(f"{village}{g:03d}")
                region_rows.append([groups[-1], f"{g}组"])
    people_rows: list[list[object]] = [["编号", "姓名", "手机号码", "职务", "行政区划代码", "替补人"]]
    for i in range(n_people):
        deputy = f"P{(i + 1) % n_people:05d}"  # the deputy of each is the next one in the file
        people_rows.append([f"P{i:05d}", f"人员{i}", f"139{i:08d}", "组长", groups[i % len(groups)], deputy])
    return write_csv(folder / "regions.csv", region_rows), write_csv(folder / "people.csv", people_rows)


async def test_five_thousand_people_without_per_row_queries(db: Database, tmp_path: Path) -> None:
    small_regions, small_people = _big_county(tmp_path / "small", 3)
    big_regions, big_people = _big_county(tmp_path / "big", 5000)
    with statements(db) as small:
        await load(db, small_regions)
        await load(db, small_people)
    with statements(db) as big:
        r = await load(db, big_regions)
        p = await load(db, big_people)
    assert counts(r, "regions") == (0, 0, 556, 0)
    assert counts(p, "people") == (4997, 1, 2, 0)  # P00002's deputy: P00000 then, P00003 now
    # The same number of SELECTs whatever the size: existing rows are loaded once.
    assert big.count("SELECT") == small.count("SELECT")
    assert len(big) < 40, big
    again = await load(db, big_people, now=T1)
    assert counts(again, "people") == (0, 0, 5000, 0)
    assert (await people(db))["P04999"].deputy_key == "P00000"


def test_format_report_groups_rows_by_reason_in_chinese() -> None:
    from warnd.roster import Counts, SheetInfo
    from warnd.roster.problems import RowNote, problem

    def note(sev: Severity, row: int, code: str, detail: str = "", **labels: str) -> RowNote:
        return RowNote(sev, "people", "人员", row, problem(code, detail, **labels))

    report = ImportReport(
        path=Path("名单.xlsx"),
        sheets=[SheetInfo("人员", "people", 3, 9, ("备注",), ("第9列「AB角电话」看起来也是“联系电话”",), 2)],
        ignored_sheets=["说明"],
        people=Counts(added=5, updated=1, unchanged=0, rejected=3),
        notes=[
            note(Severity.REJECTED, 4, "name_missing", name="姓名"),
            note(Severity.REJECTED, 4, "role_unknown", "村霸", role="职务"),
            note(Severity.REJECTED, 6, "name_missing", name="姓名"),
            note(Severity.REJECTED, 7, "name_missing", name="姓名"),
            note(Severity.REJECTED, 8, "name_missing", name="姓名"),
            note(Severity.WARNING, 5, "landline_only", "赵敏 0745-1234567"),
            note(Severity.SKIPPED, 12, "summary_row", "合计"),
        ],
        not_in_file=2,
    )
    assert format_report(report).splitlines() == [
        "导入名单：名单.xlsx",
        "  「人员」表：责任人，表头在第2至3行，9行数据；未使用的列：备注",
        "    注意：第9列「AB角电话」看起来也是“联系电话”",
        "  「说明」表：没有找到行政区划、责任人或应急广播的表头，未导入",
        "责任人：新增5，更新1，未变0，未导入3，需注意1，跳过1行",
        "数据库里有、本文件里没有的责任人：2人（仍保持在岗）",
        "未导入的行（这些行的内容都没有导入，请改正后重新导入）：",
        "  第4、6至8行：缺少姓名",
        "  第4行：职务不认识：不在 roles.toml 的职务名称或别名里；一人多职请用“、”隔开（村霸）",
        "需要注意（已导入）：",
        "  第5行：只有固定电话：短信永远发不到，只能打电话叫应（赵敏 0745-1234567）",
        "不是名单数据、已跳过的行：",
        "  第12行：合计、小计、说明、备注等行，已跳过（合计）",
    ]
    assert [r.row for r in report.rejections] == [4, 6, 7, 8]
    assert report.rejections[0].reason == "缺少姓名；职务不认识：不在 roles.toml 的职务名称或别名里；一人多职请用“、”隔开（村霸）"


async def test_a_mobile_and_a_second_number_are_both_kept(db: Database, tmp_path: Path) -> None:
    await seed_small(db, tmp_path)
    rows = [
        ["姓名", "联系电话", "手机号码", "职务", "行政区划代码"],  # office number first, then mobile
        ["黄志明", "0745-1234567", "13800000010", "村支书", "430999100201"],
        ["马红梅", "13800000011", "", "村主任", "430999100201"],  # a mobile under 联系电话 is the mobile
        ["林秀英", "13900000012", "13800000012", "网格员", "430999100201"],  # two mobiles: the 手机号码 first
        ["胡建军", "", "13800000013/0745-7654321", "组长", "430999100201001"],  # both in one cell
        ["高山", "0745-坏号", "13800000016", "组长", "430999100201002"],  # a bad second number is ignored
    ]
    report = await load(db, write_csv(tmp_path / "p.csv", rows))
    assert report.ok, format_report(report)
    assert report.sheets[0].ignored_columns == ()
    ppl = await people(db)
    assert {k: (p.phone, p.phone2) for k, p in ppl.items()} == {
        "+8613800000010": ("+8613800000010", "+867451234567"),
        "+8613800000011": ("+8613800000011", None),
        "+8613800000012": ("+8613800000012", "+8613900000012"),
        "+8613800000013": ("+8613800000013", "+867457654321"),
        "+8613800000016": ("+8613800000016", None),
    }
    assert [(n.row, n.problem.code) for n in report.warnings] == [(6, "phone2_ignored")]
    same = [["姓名", "手机号码", "手机号码", "职务", "行政区划代码"]]
    with pytest.raises(RosterError, match="第2列和第3列的表头都是「手机号码」"):
        await load(db, write_csv(tmp_path / "same.csv", same))
