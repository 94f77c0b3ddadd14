"""A roster as a county really keeps it (tests/support/county_sheet.py): merged title rows,
所属乡镇 merged down, 所属村, 联系电话 beside 手机号码, 替补人/AB角, 一肩挑, a landline-only
值班员, 合计/填表说明 rows. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from sqlmodel import select

from support.county_sheet import county_workbook
from warnd.cli import main
from warnd.config import load_policy
from warnd.core.domain import AlertFacts, AlertStatus, Colour, Step
from warnd.core.planner import plan_alert
from warnd.db.engine import Database
from warnd.db.models import Event, Person, PersonExtraRole, Region
from warnd.engine.messages import address_for
from warnd.engine.roster import RosterCache
from warnd.roster import ImportReport, RosterError, Severity, format_report, import_roster

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
SHIMEN, HEKOU = "430999100201", "430999200201"


async def people(db: Database) -> dict[str, Person]:
    async with db.session() as s:
        return {p.name: p for p in (await s.exec(select(Person))).all()}


async def extra_roles(db: Database) -> dict[int, list[str]]:
    async with db.session() as s:
        rows = (await s.exec(select(PersonExtraRole))).all()
    out: dict[int, list[str]] = {}
    for r in sorted(rows, key=lambda r: (r.person_id, r.position)):
        out.setdefault(r.person_id, []).append(r.role)
    return out


def by_row(report: ImportReport, severity: Severity) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for n in report.of(severity, "people"):
        out.setdefault(n.row, []).append(n.problem.code)
    return out


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    return county_workbook(tmp_path / "示例县2026年防汛责任人名单.xlsx")


async def test_a_county_sheet_imports_with_every_row_accounted_for(db: Database, sheet: Path) -> None:
    report = await import_roster(db, sheet, now=T0)
    assert [(s.sheet, s.kind, s.header_row) for s in report.sheets] == [("行政区划", "regions", 2), ("责任人", "people", 3)]
    assert report.ignored_sheets == ["说明"]
    assert (report.regions.added, report.regions.rejected) == (8, 0)
    assert (report.people.added, report.people.rejected) == (14, 3)
    # Rejected: an unknown village (two rows, one reason) and an unknown 职务.
    assert by_row(report, Severity.REJECTED) == {19: ["place_unknown"], 20: ["place_unknown"], 21: ["role_unknown"]}
    # Imported, with a warning: the landline-only 值班员, a 替补人 nobody is.
    assert by_row(report, Severity.WARNING) == {6: ["landline_only"], 16: ["deputy_not_found"]}
    # Imported, and said what was inferred: 县防指 is a unit, the county role sits at the county.
    assert by_row(report, Severity.NOTE) == {5: ["county_inferred"]}
    # Not data: the section row, the pre-numbered empty row, 合计, 填表说明, 填表人.
    assert by_row(report, Severity.SKIPPED) == {
        14: ["section_row"], 22: ["number_only_row"], 23: ["summary_row"], 24: ["summary_row"], 25: ["summary_row"]}
    assert [(n.row, n.problem.code) for n in report.of(Severity.SKIPPED, "regions")] == [(11, "summary_row")]
    # Columns that look meant to be imported are reported, not dropped silently.
    people_sheet = report.sheets[1]
    assert people_sheet.ignored_columns == ("序号", "备注")
    assert people_sheet.column_warnings == (
        "第9列「AB角电话」看起来也是“联系电话”，但已使用「联系电话」列，这一列没有导入",
        "第10列「*身份证号」标着必填，但没有识别，这一列没有导入：请检查表头或 roster-headers.toml",
    )

    text = format_report(report).splitlines()
    assert "  「责任人」表 第19、20行：找不到这个名称对应的乡镇、村或组（白水乡桃花村）" in text
    assert "  「责任人」表 第6行：只有固定电话：短信永远发不到，只能打电话叫应（赵敏 0745-4221234）" in text
    assert "  「责任人」表 第23至25行：合计、小计、说明、备注等行，已跳过" in "\n".join(text)
    assert "责任人：新增14，更新0，未变0，未导入3，需注意2，跳过5行" in text


async def test_what_the_county_sheet_leaves_in_the_database(db: Database, sheet: Path) -> None:
    await import_roster(db, sheet, now=T0)
    ppl = await people(db)
    key = {name: p.key for name, p in ppl.items()}
    # Every 替补人/AB角 is kept: by name, by phone (马红梅's is 黄志明's mobile), forward references.
    assert {name: p.deputy_key for name, p in ppl.items()} == {
        "李国强": key["王建华"], "王建华": key["李国强"], "赵敏": key["陈静"], "陈静": key["赵敏"],
        "刘洋": key["孙伟"], "孙伟": key["刘洋"], "周丽": key["孙伟"], "黄志明": key["马红梅"],
        "马红梅": key["黄志明"], "高山": key["黄志明"], "吴刚": key["郑勇"], "郑勇": None,
        "何文": key["罗海"], "罗海": key["何文"],
    }
    # 所属乡镇 merged down over 青山镇's rows, "/" for township officials, 所属村, 石门村一组.
    assert {name: p.region_code for name, p in ppl.items() if name in ("刘洋", "周丽", "马红梅", "高山", "何文")} == {
        "刘洋": "430999100", "周丽": "430999100", "马红梅": SHIMEN, "高山": "430999100201001", "何文": HEKOU}
    assert ppl["李国强"].region_code == ppl["王建华"].region_code == "430999"  # county roles at the county
    # 一肩挑: one person, several roles.
    assert (ppl["黄志明"].role, ppl["何文"].role) == ("village_secretary", "village_secretary")
    assert await extra_roles(db) == {ppl["黄志明"].id: ["village_head"], ppl["何文"].id: ["village_head"]}
    # 联系电话 kept as the second number; a landline-only official has no mobile at all.
    assert (ppl["李国强"].phone, ppl["李国强"].phone2) == ("+8613800000001", "+867454220001")
    assert (ppl["赵敏"].phone, ppl["赵敏"].phone2, ppl["赵敏"].key) == ("", "+867454221234", "+867454221234")
    async with db.session() as s:
        regions = {r.code for r in (await s.exec(select(Region))).all()}
        event = (await s.exec(select(Event).where(Event.kind == "roster_imported"))).one()
    assert "430999" in regions and "430999100" in regions  # 12-digit statistical codes shortened
    assert event.data["people"] == {"added": 14, "updated": 0, "unchanged": 0, "rejected": 3}
    assert (event.data["warnings"], event.data["skipped"]) == (2, 6)


async def test_one_person_with_two_roles_is_one_call_through_the_planner(db: Database, sheet: Path) -> None:
    await import_roster(db, sheet, now=T0)
    snap = await RosterCache(db).get()
    hzm = next(p for p in snap.people if p.name == "黄志明")
    assert hzm.roles == ("village_secretary", "village_head")
    alert = AlertFacts(id=1, hazard="rainstorm", colour=Colour.RED, step=Step.IMMINENT, status=AlertStatus.ACTUAL,
                       region_codes=frozenset({SHIMEN, f"{SHIMEN}001"}), sent=T0)
    plan = plan_alert(alert, snap.regions, snap.index, load_policy(), T0)
    calls = [(snap.by_id[c.person_id].name, c.role) for c in plan.calls if c.region_code == SHIMEN]
    assert sorted(calls) == [("马红梅", "grid_worker"), ("黄志明", "village_secretary")]  # one call, not two
    # Both of 黄志明's roles are filled: no coverage gap for either at 石门村.
    assert {(g.region_code, g.role) for g in plan.gaps if g.region_code == SHIMEN} == set()
    # The landline-only 值班员 is reachable by voice only; the duty room still has 陈静.
    zm = next(p for p in snap.people if p.name == "赵敏")
    assert (address_for(zm, "sms"), address_for(zm, "voice")) == ("", "+867454221234")
    assert sorted(p.name for p in snap.duty_officers()) == ["赵敏", "陈静"]


async def test_reimport_is_unchanged_and_a_dropped_role_is_removed(db: Database, sheet: Path, tmp_path: Path) -> None:
    await import_roster(db, sheet, now=T0)
    again = await import_roster(db, sheet, now=T1)
    assert (again.people.added, again.people.updated, again.people.unchanged) == (0, 0, 14)
    wb = openpyxl.load_workbook(sheet)
    wb["责任人"]["E11"] = "村党支部书记"  # 黄志明 hands over the 村委会主任 role
    wb["责任人"]["E17"] = "村支书、村主任、网格员"  # 何文 takes a third
    changed_path = tmp_path / "changed.xlsx"
    wb.save(changed_path)
    changed = await import_roster(db, changed_path, now=T1)
    assert (changed.people.updated, changed.people.unchanged) == (2, 12)
    ppl = await people(db)
    assert await extra_roles(db) == {ppl["何文"].id: ["village_head", "grid_worker"]}
    assert ppl["黄志明"].updated_at == T1 and ppl["李国强"].updated_at == T0


async def test_the_same_person_on_two_rows_becomes_one_person_with_both_roles(db: Database, tmp_path: Path) -> None:
    await import_roster(db, county_workbook(tmp_path / "c.xlsx"), now=T0)
    rows = "\n".join([
        "所属乡镇,所属村,姓名,职务,手机号码",
        "青山镇,枫树村,胡建军,村支书,13800000012",
        "青山镇,枫树村,胡建军,村主任,13800000012",  # 一肩挑 written as two rows
        "青山镇,枫树村,林秀英,网格员,13800000012",  # same number, another name: a real duplicate
    ])
    path = tmp_path / "枫树村.csv"
    path.write_text(rows, encoding="utf-8")
    report = await import_roster(db, path, now=T1)
    assert (report.people.added, report.people.rejected) == (1, 1)
    assert [(n.row, n.problem.code) for n in report.of(Severity.NOTE)] == [(3, "same_person_merged")]
    assert [r.codes for r in report.rejections] == [("key_duplicate",)]
    ppl = await people(db)
    assert ppl["胡建军"].role == "village_secretary"
    assert (await extra_roles(db))[ppl["胡建军"].id] == ["village_head"]


async def test_a_header_split_over_two_rows(db: Database, tmp_path: Path) -> None:
    await import_roster(db, county_workbook(tmp_path / "c.xlsx"), now=T0)
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["枫树村责任人"])
    ws.append(["姓名", "职务", "所属乡镇", "所属村", "联系方式", None, "替补人（AB角）"])
    ws.append([None, None, None, None, "手机号码", "联系电话", None])
    ws.merge_cells("E2:F2")
    for col in "ABCDG":
        ws.merge_cells(f"{col}2:{col}3")
    ws.append(["胡建军", "村支书", "青山镇", "枫树村", 13800000012, "0745-4239999", "林秀英"])
    ws.append(["林秀英", "村主任", "青山镇", "枫树村委会", 13800000013, None, "胡建军"])
    path = tmp_path / "two-row.xlsx"
    wb.save(path)
    report = await import_roster(db, path, now=T1)
    assert report.ok, format_report(report)
    assert (report.sheets[0].header_row, report.sheets[0].header_rows) == (3, 2)
    assert "表头在第2至3行" in format_report(report)
    ppl = await people(db)
    assert (ppl["胡建军"].phone, ppl["胡建军"].phone2) == ("+8613800000012", "+867454239999")
    assert ppl["林秀英"].region_code == "430999100202"  # 枫树村委会 is 枫树村
    assert ppl["林秀英"].deputy_key == ppl["胡建军"].key


async def test_a_people_only_sheet_on_an_empty_database_says_regions_come_first(db: Database, tmp_path: Path) -> None:
    wb = openpyxl.load_workbook(county_workbook(tmp_path / "c.xlsx"))
    del wb["行政区划"]
    path = tmp_path / "people-only.xlsx"
    wb.save(path)
    with pytest.raises(RosterError, match=r"数据库里还没有任何行政区划.*请先导入行政区划表"):
        await import_roster(db, path, now=T0)
    assert await people(db) == {}


def test_cli_json_and_exit_codes(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = county_workbook(tmp_path / "c.xlsx")
    people_only = tmp_path / "people-only.xlsx"
    wb = openpyxl.load_workbook(sheet)
    del wb["行政区划"]
    wb.save(people_only)

    assert main(["roster", "import", str(people_only), "--database", db_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("名单未导入：") and "请先导入行政区划表" in err
    assert main(["roster", "import", str(people_only), "--database", db_url, "--format", "json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "请先导入行政区划表" in out["error"]

    assert main(["roster", "import", str(sheet), "--database", db_url, "--format", "json"]) == 1  # rows rejected
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["people"] == {"added": 14, "updated": 0, "unchanged": 0, "rejected": 3}
    place = next(g for g in out["groups"] if g["code"] == "place_unknown")
    assert (place["severity"], place["sheet"], place["rows"], place["details"]) == (
        "rejected", "责任人", [19, 20], ["白水乡桃花村"])
    assert place["text"] == "第19、20行：找不到这个名称对应的乡镇、村或组（白水乡桃花村）"
    assert {"severity": "warning", "kind": "people", "sheet": "责任人", "row": 6, "code": "landline_only",
            "message": "只有固定电话：短信永远发不到，只能打电话叫应", "detail": "赵敏 0745-4221234"} in out["rows"]
    assert out["sheets"][1]["column_warnings"][0].startswith("第9列「AB角电话」")

    assert main(["roster", "import", str(sheet), "--database", db_url]) == 1
    text = capsys.readouterr().out
    assert "责任人：新增0，更新0，未变14，未导入3，需注意2，跳过5行" in text
