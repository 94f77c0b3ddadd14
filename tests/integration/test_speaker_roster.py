"""Loudspeakers imported with the roster: the device sheet, re-import, rejected rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from support.samples import sample
from warnd.db.engine import Database
from warnd.db.models import Speaker
from warnd.roster import format_report, import_roster

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


async def _speakers(db: Database) -> dict[str, Speaker]:
    async with db.session() as s:
        return {sp.device_id: sp for sp in (await s.exec(select(Speaker))).all()}


async def test_device_sheet_imports_and_reimports_unchanged(db: Database, tmp_path: Path) -> None:
    await import_roster(db, sample("regions-sample.csv"), now=NOW)
    report = await import_roster(db, sample("speakers-sample.csv"), now=NOW)
    assert report.ok, format_report(report)
    assert [sh.kind for sh in report.sheets] == ["speakers"]
    assert (report.speakers.added, report.speakers.rejected) == (4, 0)
    sp = await _speakers(db)
    assert sp["SL-QS-SM-01"].capabilities == ["tts", "audio"] and sp["SL-QS-SM-01"].lon == 110.421
    assert sp["SL-QS-SM-02"].region_code == "430999100201001"
    assert sp["SL-QS-FS-01"].region_code == "430999100202"  # by village name
    assert sp["SL-BS-HK-01"].capabilities == ["tts"] and sp["SL-BS-HK-01"].active
    assert "应急广播：新增4，更新0，未变0，未导入0" in format_report(report)

    again = await import_roster(db, sample("speakers-sample.csv"), now=NOW)
    assert (again.speakers.added, again.speakers.updated, again.speakers.unchanged) == (0, 0, 4)

    moved = tmp_path / "moved.csv"
    moved.write_text("设备编号,行政区划代码,启用\nSL-QS-SM-02,430999100202001,是\nSL-BS-HK-01,430999200201,否\n",
                     encoding="utf-8")
    report = await import_roster(db, moved, now=NOW)
    assert (report.speakers.updated, report.speakers.unchanged) == (2, 0)
    sp = await _speakers(db)
    assert sp["SL-QS-SM-02"].region_code == "430999100202001" and not sp["SL-BS-HK-01"].active
    assert sp["SL-QS-SM-01"].capabilities == ["tts", "audio"]  # not in the file: untouched


async def test_bad_device_rows_are_rejected_with_reasons(db: Database, tmp_path: Path) -> None:
    await import_roster(db, sample("regions-sample.csv"), now=NOW)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "设备编号,行政区划代码,能力,经度,纬度\n"
        "OK-1,430999100201,TTS,,\n"
        "bad/id,430999100201,TTS,,\n"
        "T-2,430999100,TTS,,\n"
        "T-3,430999100299,TTS,,\n"
        "T-4,430999100201,喷火,,\n"
        "T-5,430999100201,TTS,28.4,110.4\n"
        "OK-1,430999100202,TTS,,\n", encoding="utf-8")
    report = await import_roster(db, bad, now=NOW)
    assert report.speakers.added == 1 and report.speakers.rejected == 6
    reasons = {r.row: r.reason for r in report.rejections}
    assert reasons[3] == "设备编号只能有字母、数字、_ 和 -，最长64位（它也是喇叭的 MQTT 客户端 ID）（bad/id）"
    assert reasons[4] == "喇叭只能属于村（12位代码）或组（15位），不能属于乡镇（430999100）"
    assert reasons[5] == "行政区划代码在本县不存在（数据库和本文件里都没有）（430999100299）"
    assert reasons[6] == "能力只能填 TTS/文本转语音、音频（喷火）"
    assert reasons[7] == "坐标不在中国境内：经度和纬度是否填反了？（28.4, 110.4）"
    assert reasons[8] == "设备编号重复，只导入了第一次出现的那一行（OK-1，同第2行）"
    assert list(await _speakers(db)) == ["OK-1"]


async def test_demo_helpers_seed_a_fleet_and_summarise(db: Database) -> None:
    from devtools.demo.loudspeakers import loudspeaker_summary, seed_speakers

    await import_roster(db, sample("regions-sample.csv"), now=NOW)
    ids = await seed_speakers(db, total=10, now=NOW, prefix="DEMO")
    assert ids[0] == "DEMO-00001" and len(ids) == 10
    assert await seed_speakers(db, total=10, now=NOW, prefix="DEMO") == ids  # idempotent
    sp = await _speakers(db)
    assert len(sp) == 10 and all(len(s.region_code) in (12, 15) for s in sp.values())
    summary = await loudspeaker_summary(db, now=NOW)
    assert summary == {"steps": {}, "fleet": {"total": 10, "online": 0, "offline": 0, "stale": 0,
                                              "never_seen": 10}}
