"""The audit report of a storm whose answers are known by construction (support/audit_scenario:
the real engine, Tencent SMS and WeCom simulators, loudspeakers on Mosquitto, a manual clock),
on SQLite and PostgreSQL; then the files: XLSX read back cell by cell, CSV, JSON, the CLI.

How warning A's numbers come about (T0 = 10:00):
- 9 officials called (辰龙关村 3 + 一组 1, 界亭驿村 3, 沿溪村 2); 麻溪铺村 has nobody (3 gaps) and
  沿溪村 no 村主任 (1 gap). SMS to all 9, WeCom cards to 张书记 and 陈书记.
- Carrier reports: 8 delivered, 陈书记's undelivered. Loudspeakers: A1, A2 play in 辰龙关村; B1
  fails (fallback call to 周主任), C1 and E1 never came online (fallback call to 孙书记; nobody
  for 麻溪铺村). Fallback SMS: 2.
- Confirmed: 张书记 10:02 (SMS), 陈书记 10:03 (WeCom), 李主任 10:04, 孙书记 10:06 (also his
  fallback call), 赵组长 10:08 (phoned by the duty officer) — all before any rung: in time.
  陈书记's 反馈: 12 people moved.
- 10:10:01 resend to 王网格, 周主任, 吴网格, 冯网格 + 周主任's fallback call (5 SMS); 周主任 answers
  10:12 (both calls, rung 1). 10:15:02 deputies 李主任, 周主任, 孙书记 (3 SMS); 李主任 answers for
  王网格 10:16 (rung 2). 10:20:03 superiors: 陈书记 (SMS + WeCom) for 吴网格, 孙书记 for 冯网格.
  10:25:04 吴网格 and 冯网格 go to the duty room, never confirmed.
- SMS sent 9 + 2 + 5 + 3 + 2 = 21, one undelivered → 20 人次; WeCom 2 + 1 = 3 人次.
- Minutes to confirm: 2, 3, 4, 6, 8, 12, 16 → median 6, P90 (nearest rank 7 of 7) 16.
Drill D (10:30, warning step, 官庄镇): 刘镇长 by SMS, answers 10:31; no 乡镇值班人员 (1 gap).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from support.audit_scenario import T0, Storm, build_storm, play_storm, stop_storm
from support.speaker_support import mosquitto_available
from warnd.audit import AuditReport, Scope, ScopeError, make_report
from warnd.audit.export import text_width, write_report
from warnd.audit.service import ReportOptions

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="apt install mosquitto")

REPO = Path(__file__).resolve().parents[2]
REAL, DRILL = "实战", "演练"
IMM, WARN, ALL = "临灾预警(1h)", "预警(3h)", "合计"


@pytest.fixture
async def storm(db_url: str, tmp_path: Path) -> AsyncIterator[Storm]:
    s = await build_storm(db_url, tmp_path)
    try:
        yield await play_storm(s)
    finally:
        await stop_storm(s)


def values(report: AuditReport, key: str) -> list[list[Any]]:
    t = report.table(key)
    return [[row.get(c.key) for c in t.columns] for row in t.rows]


def summary(report: AuditReport) -> dict[str, tuple[Any, Any]]:
    return {r["key"]: (r["real"], r["drill"]) for r in report.table("summary").rows}


ISSUES_A = [
    # kind, step, channel, 期, 人次, 人数, 催办人次, 播放, 已发出, 送达, 未送达, 失败
    [REAL, IMM, "短信", 1, 20, 9, 10, None, 21, 8, 1, 0],
    [REAL, IMM, "企业微信", 1, 3, 2, 1, None, 3, 0, 0, 0],
    [REAL, IMM, "应急广播(村村响)", 1, None, None, None, 2, None, None, None, None],
    [REAL, IMM, ALL, 1, 23, 9, 11, 2, 24, 8, 1, 0],
    [REAL, ALL, ALL, 1, 23, 9, 11, 2, 24, 8, 1, 0],
]
TOWNSHIPS_A = [
    # kind, code, name, places, reached, rate, met, SMS, WeCom, speaker, phoned, calls, confirmed,
    # in time, 反馈, moved, gaps
    [REAL, "431222100", "官庄镇", 2, 2, 1.0, True, 2, 2, 1, 1, 7, 6, 4, 1, 12, 0],
    [REAL, "431222101", "马底驿镇", 2, 1, 0.5, False, 1, 0, 0, 0, 2, 1, 1, 0, 0, 4],
]
VILLAGES_A = [
    [REAL, "官庄镇", "431222100200", "辰龙关村", 1, 1, 1.0, 1, 1, 1, 1, 4, 4, 3, 0, 0, 0],
    [REAL, "官庄镇", "431222100201", "界亭驿村", 1, 1, 1.0, 1, 1, 0, 0, 3, 2, 1, 1, 12, 0],
    [REAL, "马底驿镇", "431222101200", "沿溪村", 1, 1, 1.0, 1, 0, 0, 0, 2, 1, 1, 0, 0, 1],
    [REAL, "马底驿镇", "431222101202", "麻溪铺村", 1, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
]


async def test_report_of_one_warning_matches_the_storm(storm: Storm) -> None:
    report = await make_report(storm.engine.db, Scope(alert_id=storm.real), now=storm.clock.now())
    s = summary(report)
    assert s["warnings"] == (1, None) and s["warnings_imminent"] == (1, None)
    assert s["person_times"] == (23, None) and s["speaker_plays"] == (2, None)
    assert (s["units"], s["units_reached"], s["coverage"], s["coverage_met"]) == ((4, None), (3, None),
                                                                                  (0.75, None), (False, None))
    assert (s["calls"], s["confirmed"], s["confirmed_in_time"]) == ((9, None), (7, None), (5, None))
    assert (s["median_minutes"], s["p90_minutes"]) == ((6.0, None), (16.0, None))
    assert (s["escalations"], s["never_confirmed"], s["feedback"], s["people_moved"]) == (
        (11, None), (2, None), (1, None), (12, None))
    assert (s["speakers_never_played"], s["coverage_gaps"]) == ((3, None), (4, None))

    assert values(report, "issues") == ISSUES_A
    assert values(report, "speakers") == [[REAL, IMM, 1, 5, 2, 0, 1, 3, 4, 1, 0.25, 2, 2]]
    assert values(report, "coverage_townships") == TOWNSHIPS_A
    assert values(report, "coverage_villages") == VILLAGES_A
    assert [c.label for c in report.table("coverage_villages").columns][7:11] == [
        "短信送达", "企业微信送达", "喇叭按时播放", "值班员电话"]
    assert values(report, "confirm_steps") == [[REAL, IMM, 9, 7, 5, 5 / 9, 0, 7, 6.0, 16.0, 16.0]]
    assert values(report, "confirm_townships") == [
        [REAL, "官庄镇", IMM, 7, 6, 4, 4 / 7, 6, 6.0, 16.0, 16.0],  # 2, 3, 4, 8, 12, 16
        [REAL, "马底驿镇", IMM, 2, 1, 1, 0.5, 1, 6.0, 6.0, 6.0],
    ]
    assert values(report, "escalations") == [
        [REAL, IMM, 1, "再次提醒", 4, 2, 0],  # 王网格 and 周主任 answer later
        [REAL, IMM, 2, "替补叫应", 3, 1, 0],  # 李主任 answers for 王网格
        [REAL, IMM, 3, "上级督办", 2, 0, 0],
        [REAL, IMM, 4, "转值班室", 2, 0, 0],
    ]
    silent = report.table("never_confirmed").rows
    assert [(r["township"], r["village"], r["role"], r["name"], r["phone"], r["max_level"], r["outcome"])
            for r in silent] == [
        ("官庄镇", "界亭驿村", "网格员", "吴网格", "+86 139****0013", 4, "未确认·已转值班室"),
        ("马底驿镇", "沿溪村", "网格员", "冯网格", "+86 139****0023", 4, "未确认·已转值班室"),
    ]
    dark = report.table("speakers_not_played").rows
    assert [(r["village"], r["device_id"], r["state"], r["reason"], r["fallback"]) for r in dark] == [
        ("界亭驿村", storm.speakers["B1"], "播放失败", "amplifier_fault", True),
        ("沿溪村", storm.speakers["C1"], "已发出未回执", None, True),
        ("麻溪铺村", storm.speakers["E1"], "已发出未回执", None, True),
    ]
    warnings = report.table("warnings").rows
    assert [(w["alert_id"], w["kind"], w["step"], w["colour"], w["calls"], w["confirmed"], w["coverage"])
            for w in warnings] == [(storm.real, REAL, IMM, "黄色", 9, 7, 0.75)]
    assert warnings[0]["received_at"] == T0
    # Every count agrees with the tables it can be checked against.
    recon = report.table("reconciliation").rows
    assert {r["result"] for r in recon} == {"一致"} and len(recon) == 5
    assert [(r["from_events"], r["from_tables"]) for r in recon] == [(9, 9), (7, 7), (25, 25), (12, 12), (2, 2)]

    # Phones in full only for a caller who may see them.
    shown = await make_report(storm.engine.db, Scope(alert_id=storm.real), now=storm.clock.now(),
                              options=ReportOptions(may_see_phones=True))
    assert [r["phone"] for r in shown.table("never_confirmed").rows] == ["+8613900000013", "+8613900000023"]

    # Charts: every confirmation of the step, in time order; villages with geometry on the map.
    line = report.charts["timeline"]["real"]["steps"]["imminent"]
    assert line["calls"] == 9 and [int((t - T0).total_seconds() // 60) for t in line["confirmed_at"]] == [
        2, 3, 4, 6, 8, 12, 16]
    assert {f["code"]: f["status"] for f in report.charts["map"]} == {
        "431222100200": "confirmed", "431222100201": "reached", "431222101200": "reached",
        "431222101201": "not_targeted", "431222101202": "not_reached"}


async def test_storm_window_counts_real_and_drill_apart(storm: Storm) -> None:
    now = storm.clock.now()
    report = await make_report(storm.engine.db, Scope(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1)),
                               now=now)
    s = summary(report)
    assert s["warnings"] == (1, 1) and s["warnings_warning"] == (0, 1) and s["person_times"] == (23, 1)
    assert s["coverage"] == (0.75, 1.0) and s["coverage_met"] == (False, True) and s["coverage_gaps"] == (4, 1)
    assert s["median_minutes"] == (6.0, 1.0) and s["never_confirmed"] == (2, 0)
    assert values(report, "issues") == [*ISSUES_A,
                                        [DRILL, WARN, "短信", 1, 1, 1, 0, None, 1, 0, 0, 0],
                                        [DRILL, WARN, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0],
                                        [DRILL, ALL, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0]]
    assert values(report, "coverage_townships") == [
        *TOWNSHIPS_A, [DRILL, "431222100", "官庄镇", 1, 1, 1.0, True, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]]
    assert values(report, "confirm_steps")[-1] == [DRILL, WARN, 1, 1, 1, 1.0, 0, 1, 1.0, 1.0, 1.0]
    assert [w["alert_id"] for w in report.table("warnings").rows] == [storm.real, storm.drill]
    # A window that closes before the drill leaves it out; one that holds nothing is empty.
    early = await make_report(storm.engine.db, Scope(start=T0, end=T0 + timedelta(minutes=20)), now=now)
    assert summary(early)["warnings"] == (1, None)
    empty = await make_report(storm.engine.db, Scope(start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3)),
                              now=now)
    assert summary(empty)["warnings"] == (None, None) and all(not t.rows for t in empty.tables[1:])
    # Things that are not a warning to report on.
    with pytest.raises(ScopeError, match="no alert 9999"):
        await make_report(storm.engine.db, Scope(alert_id=9999), now=now)
    companion = storm.real + 1  # the loudspeaker-fallback alert created right after A
    with pytest.raises(ScopeError, match=f"loudspeaker fallback of alert {storm.real}"):
        await make_report(storm.engine.db, Scope(alert_id=companion), now=now)


# --- the files ------------------------------------------------------------------------------


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pre = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "warnd.cli", *pre, "report", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_files_read_back_and_the_cli(sqlite_url: str, tmp_path: Path) -> None:
    storm = await build_storm(sqlite_url, tmp_path)
    try:
        await play_storm(storm)
        report = await make_report(storm.engine.db, Scope(start=T0, end=T0 + timedelta(hours=1)),
                                   now=storm.clock.now())
    finally:
        await stop_storm(storm)
    out = write_report(report, tmp_path / "out")
    assert sorted(out) == ["csv", "html", "json", "xlsx"]
    assert out["xlsx"].name == "warnd-report-20260701T1000-20260701T1100.xlsx"

    wb = load_workbook(out["xlsx"])
    assert wb.sheetnames == [t.title for t in report.tables] + ["说明"]
    for t in report.tables:  # every sheet: Chinese headers, frozen, one row per table row
        ws = wb[t.title]
        assert [c.value for c in ws[1]] == [c.label for c in t.columns]
        assert ws.freeze_panes == "A2" and ws.max_row == len(t.rows) + 1
        for i, c in enumerate(t.columns, start=1):
            letter = ws.cell(row=1, column=i).column_letter
            assert ws.column_dimensions[letter].width >= text_width(c.label)  # CJK: two columns each
    issues = wb["期数与人次"]
    assert [[c.value for c in row] for row in issues.iter_rows(min_row=2)] == [
        *ISSUES_A, [DRILL, WARN, "短信", 1, 1, 1, 0, None, 1, 0, 0, 0],
        [DRILL, WARN, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0], [DRILL, ALL, ALL, 1, 1, 1, 0, 0, 1, 0, 0, 0]]
    towns = wb["覆盖情况(乡镇)"]
    assert [c.value for c in towns[3]] == ["实战", "431222101", "马底驿镇", 2, 1, 0.5, "否", 1, 0, 0, 0, 2, 1, 1,
                                           0, 0, 4]
    assert towns["F3"].number_format == "0.0%" and towns["G2"].value == "是"
    steps = wb["确认用时(按步骤)"]
    assert [c.value for c in steps[2]] == [REAL, IMM, 9, 7, 5, 5 / 9, 0, 7, 6.0, 16.0, 16.0]
    assert steps["I2"].number_format == "0.0"
    listed = wb["预警清单"]
    assert listed["H2"].value == datetime(2026, 7, 1, 10, 0, 0) and listed["H3"].value == datetime(2026, 7, 1, 10, 30)
    silent = wb["始终未确认人员"]
    assert [c.value for c in silent[2]][5:11] == ["界亭驿村", "网格员", "吴网格", "+86 139****0013", 4, "转值班室"]
    summ = wb["概要"]
    cov = next(r for r in summ.iter_rows(min_row=2) if r[0].value == "覆盖率")
    assert (cov[1].value, cov[1].number_format, cov[2].value) == (0.75, "0.0%", 1.0)
    about = {r[0].value: r[1].value for r in wb["说明"].iter_rows()}
    assert about["范围"] == "2026-07-01 10:00:00 至 2026-07-01 11:00:00 受理的预警" and about["电话号码"] == "已脱敏"

    raw = (out["csv"] / "issues.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][:5] == ["类别", "步骤", "渠道", "期数", "人次"]
    assert rows[1] == ["实战", IMM, "短信", "1", "20", "9", "10", "", "21", "8", "1", "0"]
    towns_csv = list(csv.reader((out["csv"] / "coverage_townships.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert towns_csv[2][3:7] == ["2", "1", "50.0%", "否"]
    assert sorted(p.name for p in out["csv"].iterdir()) == sorted(f"{t.key}.csv" for t in report.tables)

    doc = json.loads(out["json"].read_text(encoding="utf-8"))
    assert doc["scope"] == {"from": "2026-07-01T10:00:00+08:00", "to": "2026-07-01T11:00:00+08:00"}
    assert doc["tables"]["issues"]["rows"][0]["person_times"] == 20
    assert doc["tables"]["warnings"]["rows"][0]["received_at"] == "2026-07-01T10:00:00+08:00"
    assert doc["charts"]["timeline"]["real"]["steps"]["imminent"]["confirmed_at"][0] == "2026-07-01T10:02:00+08:00"

    # The command line, on the same database after the engine stopped.
    db = ["--database", sqlite_url]
    done = cli("--alert", str(storm.real), "--out", str(tmp_path / "cli"), "--format", "xlsx,json", *db)
    assert done.returncode == 0, done.stderr
    assert "实战 1期 23人次，覆盖率 75.0%（目标 95%，未达标）" in done.stdout
    assert f"xlsx: {tmp_path / 'cli' / f'warnd-report-alert-{storm.real}.xlsx'}" in done.stdout
    assert json.loads((tmp_path / "cli" / f"warnd-report-alert-{storm.real}.json").read_text())["tables"][
        "never_confirmed"]["rows"][0]["phone"] == "+86 139****0013"
    done = cli("--from", "2026-07-01 10:00", "--to", "2026-07-01T11:00", "--target", "70%", "--show-phones",
               "--out", str(tmp_path / "cli2"), "--format", "json", *db)
    assert done.returncode == 0, done.stderr
    assert "覆盖率 75.0%（目标 70%，达标）" in done.stdout and "演练 1期 1人次" in done.stdout
    doc = json.loads(next((tmp_path / "cli2").glob("*.json")).read_text())
    assert doc["coverage_target"] == 0.7 and doc["tables"]["never_confirmed"]["rows"][0]["phone"] == "+8613900000013"
    bad = cli("--alert", "9999", "--out", str(tmp_path / "none"), *db)
    assert bad.returncode == 2 and "report not written: no alert 9999" in bad.stderr
    assert not (tmp_path / "none").exists()
    bad = cli("--from", "yesterday", *db)
    assert bad.returncode == 2 and "not a time" in bad.stderr
    bad = cli("--alert", "1", "--format", "pdf", *db)
    assert bad.returncode == 2 and "formats are" in bad.stderr
    # An operator's edited texts and template: used when right, refused clearly when not.
    labels, page = tmp_path / "labels.toml", tmp_path / "page.html.j2"
    labels.write_text('title = "汛期审计"\n[tables.issues.columns]\nperson_times = "覆盖人次"\n', encoding="utf-8")
    page.write_text("<h1>{{ title }}</h1>{% for t in tables %}<h2>{{ t.title }}</h2>{% endfor %}", encoding="utf-8")
    config = tmp_path / "warnd.toml"
    config.write_text(f'[report]\nlabels = "{labels}"\nhtml_template = "{page}"\ncoverage_target = 0.7\n',
                      encoding="utf-8")
    done = cli("--alert", str(storm.real), "--out", str(tmp_path / "mine"), "--format", "html,csv", *db,
               config=config)
    assert done.returncode == 0, done.stderr
    assert "目标 70%，达标" in done.stdout
    html = next((tmp_path / "mine").glob("*.html")).read_text(encoding="utf-8")
    assert html.startswith("<h1>汛期审计</h1><h2>概要</h2>")
    assert "覆盖人次" in next((tmp_path / "mine").glob("*-csv")).joinpath("issues.csv").read_text(encoding="utf-8-sig")
    labels.write_text('[tables.issues.columns]\nperson_tmes = "x"\n', encoding="utf-8")
    page.write_text("{% for t in tables %}", encoding="utf-8")
    bad = cli("--alert", str(storm.real), "--out", str(tmp_path / "mine2"), *db, config=config)
    assert bad.returncode == 2 and "person_tmes: unknown key" in bad.stderr
    labels.write_text("", encoding="utf-8")
    bad = cli("--alert", str(storm.real), "--out", str(tmp_path / "mine2"), *db, config=config)
    assert bad.returncode == 2 and "report not written: TemplateSyntaxError" in bad.stderr
