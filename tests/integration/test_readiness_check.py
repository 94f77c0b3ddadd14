"""`warnd check` against a real database (SQLite and PostgreSQL): a roster full of holes, one
with warnings only, and a ready one. Exit status 2 / 1 / 0 and the Chinese lines."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from support.county_sheet import county_workbook
from support.samples import sample
from warnd.cli import main
from warnd.db.engine import Database
from warnd.db.models import FeedState, Speaker

LONG_AGO = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # 08:00 Beijing time


def run(db_url: str, *args: str) -> int:
    return main([*args, "--database", db_url])


def _set_fleet_and_feeds(db_url: str) -> None:
    async def go() -> None:
        db = Database(db_url)
        try:
            async with db.session() as s, s.begin():
                await s.exec(update(Speaker).where(Speaker.device_id == "SL-BS-HK-01")  # type: ignore[call-overload]
                             .values(online=False, last_seen_at=LONG_AGO))
                await s.exec(update(Speaker).where(Speaker.device_id == "SL-QS-SM-02")  # type: ignore[call-overload]
                             .values(online=True, last_seen_at=LONG_AGO))
                s.add(FeedState(source="huaihua-hydro", failures=3, last_error="HTTP 503 Service Unavailable",
                                last_error_at=LONG_AGO))
        finally:
            await db.close()

    asyncio.run(go())


def test_a_roster_full_of_holes(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = county_workbook(tmp_path / "county.xlsx", duty_officers=False)
    assert run(db_url, "roster", "import", str(sheet)) == 1  # some rows rejected (bad place, bad role)
    assert run(db_url, "roster", "import", str(sample("speakers-sample.csv"))) == 0
    _set_fleet_and_feeds(db_url)
    capsys.readouterr()

    assert run(db_url, "check") == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("汛前检查：示例县（北京时间 ")
    assert lines[1:] == [
        "检查了：2个乡镇、3个村、2个组，责任人12人，喇叭4台，信息源1个",
        "错误（3项）",
        "  县值班室没有值班员：叫应无人确认时会转给值班室，责任人空缺也通知值班室，现在这些都将无人接收。请在名单中加入县级“值班员”",
        "  必需职务全部空缺（2项）：预警到这些地方时，没有一个必需的责任人可以叫应",
        "    青山镇·枫树村：村支书、村主任、网格员都无人担任（临灾预警）",
        "    青山镇·枫树村·一组：组长都无人担任（临灾预警）",
        "警告（10项）",
        "  必需职务无人担任（4项）：括号里是需要这一职务的预警阶段；届时将作为责任人空缺报给值班室",
        "    青山镇：包乡领导（预报）",
        "    白水乡：包乡领导（预报）；乡镇值班人员（预警）",
        "    白水乡·河口村：网格员（临灾预警）",
        "  没有替补人（AB角）的责任人（1项）：本人不应时，替补叫应这一步将落空",
        "    白水乡：乡镇长 郑勇",
        "  喇叭从未上线（2项）：从未连上过平台，临灾时无法确认能播放",
        "    青山镇·石门村：SL-QS-SM-01",
        "    青山镇·枫树村：SL-QS-FS-01",
        "  喇叭离线（1项）：临灾时将转为鸣锣吹哨/敲门入户",
        "    白水乡·河口村：SL-BS-HK-01（最后心跳 05-01 08:00）",
        "  喇叭心跳超时（1项）：已有一段时间没有心跳",
        "    青山镇·石门村·一组：SL-QS-SM-02（最后心跳 05-01 08:00）",
        "  信息源出错（1项）：最近一次获取或推送失败",
        "    huaihua-hydro，错误：HTTP 503 Service Unavailable",
        "结论：有错误，未就绪，必须在汛前处理（退出码 2）",
    ]

    assert run(db_url, "check", "--format", "json") == 2
    data = json.loads(capsys.readouterr().out)
    assert (data["status"], data["exit_code"], data["summary"]) == ("errors", 2, {"error": 3, "warning": 10, "info": 0})
    duty = data["findings"][0]
    assert (duty["code"], duty["severity"], duty["region_name"], duty["role_labels"]) == (
        "no_duty_officer", "error", "示例县", ["值班员"])
    hole = next(f for f in data["findings"] if f["code"] == "role_unfilled" and f["region_code"] == "430999200201")
    assert (hole["region_name"], hole["role_labels"], hole["steps"], hole["text"]) == (
        "白水乡·河口村", ["网格员"], ["imminent"], "白水乡·河口村：网格员（临灾预警）")


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


READY_PEOPLE = [
    ["编号", "姓名", "职务", "手机号码", "联系电话", "所属乡镇", "所属村", "替补人"],
    ["K1", "李国强", "带班县领导", "13800000001", "", "", "", "K2"],
    ["K2", "王建华", "防指成员", "13800000002", "", "", "", "K1"],
    ["K3", "赵敏", "值班员", "13800000003", "0745-4221234", "", "", "K2"],
    ["K4", "刘洋", "包乡领导", "13800000004", "", "青山镇", "", "K5"],
    ["K5", "孙伟", "乡镇党委书记、乡镇长", "13800000005", "", "青山镇", "", "K6"],
    ["K6", "周丽", "乡镇值班员", "13800000006", "", "青山镇", "", "K5"],
    ["K7", "黄志明", "村党支部书记、村委会主任", "13800000007", "", "青山镇", "石门村", "K8"],
    ["K8", "马红梅", "网格员", "13800000008", "", "青山镇", "石门村", "K7"],
]


def test_warnings_only_then_ready(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regions = _write(tmp_path / "regions.csv", [
        ["行政区划代码", "名称"], ["430999", "示例县"], ["430999100", "青山镇"], ["430999100201", "石门村"]])
    assert run(db_url, "roster", "import", str(regions)) == 0
    warnings_only = [row[:] for row in READY_PEOPLE]
    warnings_only[8][7] = ""  # 马红梅 without a deputy
    assert run(db_url, "roster", "import", str(_write(tmp_path / "p1.csv", warnings_only))) == 0
    capsys.readouterr()
    assert run(db_url, "check") == 1
    out = capsys.readouterr().out
    assert "  没有替补人（AB角）的责任人（1项）：本人不应时，替补叫应这一步将落空\n    青山镇·石门村：网格员 马红梅\n" in out
    assert out.endswith("结论：有警告，建议汛前处理（退出码 1）\n")

    assert run(db_url, "roster", "import", str(_write(tmp_path / "p2.csv", READY_PEOPLE))) == 0
    capsys.readouterr()
    assert run(db_url, "check") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["检查了：1个乡镇、1个村、0个组，责任人8人，喇叭0台，信息源0个",
                       "没有发现问题", "结论：已就绪（退出码 0）"]


def test_configured_sources_are_checked_even_without_their_secrets(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARND_FEED_HYDRO_SECRET", raising=False)
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[sources.county-qxt]\nkind = "cap_push"\nsenders = ["qx@county"]\ntoken = "env:WARND_FEED_CMA_TOKEN"\n'
        '[sources.huaihua-hydro]\nkind = "cap_poll"\nurl = "https://hydro.example/atom.xml"\n'
        'senders = ["hydro@example"]\nsecret = "env:WARND_FEED_HYDRO_SECRET"\n'
        '[sources.retired]\nkind = "cap_poll"\nurl = "https://old.example/atom.xml"\nenabled = false\n'
        'senders = ["old@example"]\n', encoding="utf-8")
    settings = tmp_path / "warnd.toml"
    settings.write_text(f'[feeds]\nsources = "{sources}"\n', encoding="utf-8")
    regions = _write(tmp_path / "regions.csv", [
        ["行政区划代码", "名称"], ["430999", "示例县"], ["430999100", "青山镇"], ["430999100201", "石门村"]])
    assert run(db_url, "roster", "import", str(regions)) == 0
    assert run(db_url, "roster", "import", str(_write(tmp_path / "p.csv", READY_PEOPLE))) == 0
    capsys.readouterr()
    assert main(["--config", str(settings), "check", "--database", db_url]) == 1
    out = capsys.readouterr().out
    assert "  信息源从未成功获取（1项）：请检查地址和凭据\n    huaihua-hydro\n" in out
    assert "提示（1项）\n  信息源尚未推送过（1项）：推送类信息源在没有预警时不推送，属正常\n    county-qxt\n" in out
    assert "retired" not in out
