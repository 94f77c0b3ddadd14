"""The audit numbers as pure functions over hand-written event-log rows: what counts as a 期,
a 人次, a place reached, a confirmation in time; plus the helpers (percentile, phone masking,
labels, time parsing) and the SVG charts."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from warnd.audit.charts import coverage_bars, nice_ceiling, timeline, village_map
from warnd.audit.cli import parse_target, parse_time
from warnd.audit.compute import build_report
from warnd.audit.html import render_html
from warnd.audit.labels import LabelsError, load_labels
from warnd.audit.model import AuditReport
from warnd.audit.rows import (
    AlertRow,
    AuditInput,
    CallRow,
    DeliveryRow,
    EventRow,
    FeedbackRow,
    PersonRow,
    RegionRow,
    Scope,
    SpeakerCommandRow,
)
from warnd.audit.stats import mask_phone, median, percentile

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
TOWN, VA, VB, GA = "431222100", "431222100200", "431222100201", "431222100200001"


def m(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


class Log:
    """Builds an AuditInput the way the engine writes it: rows plus their events."""

    def __init__(self) -> None:
        self.inp = AuditInput(scope=Scope(start=T0, end=m(600)), generated_at=m(600))
        self.inp.regions = {r.code: r for r in [
            RegionRow("431222", "沅陵县", "county", None), RegionRow(TOWN, "官庄镇", "township", "431222"),
            RegionRow(VA, "辰龙关村", "village", TOWN, "POINT(110.4 28.4)"), RegionRow(VB, "界亭驿村", "village", TOWN),
            RegionRow(GA, "一组", "group", VA)]}
        self.inp.people = {p.id: p for p in [
            PersonRow(1, "张书记", "+8613900000001", "village_secretary", VA),
            PersonRow(2, "李主任", "+8613900000002", "village_head", VA),
            PersonRow(3, "赵组长", "+8613900000004", "group_leader", GA),
            PersonRow(4, "陈书记", "+8613900000011", "village_secretary", VB),
            PersonRow(5, "刘镇长", "+8613900000031", "township_head", TOWN)]}
        self.inp.role_labels = {"village_secretary": "村支书", "group_leader": "组长"}
        self._ids = {"event": 0, "delivery": 0, "call": 0}

    def _next(self, what: str) -> int:
        self._ids[what] += 1
        return self._ids[what]

    def event(self, at: datetime, kind: str, **kw: Any) -> None:
        ids = {k: kw.pop(k, None) for k in ("alert_id", "call_id", "delivery_id", "person_id")}
        self.inp.events.append(EventRow(self._next("event"), at, kind, data=kw, **ids))

    def alert(self, aid: int, step: str, at: datetime, status: str = "Actual", opened: int | None = None,
              carried: tuple[int, ...] = ()) -> None:
        self.inp.alerts.append(AlertRow(aid, f"A-{aid}", status, "Alert", "api", "rainstorm", "yellow", step,
                                        f"headline {aid}", at, "active"))
        self.event(at, "alert_accepted", alert_id=aid, step=step, colour="yellow", hazard="rainstorm",
                   status=status, msg_type="Alert")
        if opened is not None:
            self.event(at, "calls_opened", alert_id=aid, calls=opened, carried=list(carried))

    def call(self, aid: int, person: int, at: datetime, region: str, state: str = "open", step: str = "imminent",
             note: str | None = None) -> int:
        cid = self._next("call")
        p = self.inp.people[person]
        self.inp.calls.append(CallRow(cid, aid, person, step, p.role, region, state, 0, at, note))
        return cid

    def send(self, aid: int, cid: int | None, person: int, at: datetime, channel: str = "sms",
             purpose: str = "warning", report: str | None = None, step: str = "imminent") -> int:
        did = self._next("delivery")
        self.inp.deliveries.append(DeliveryRow(did, aid, cid, person, channel, purpose, step, 0, at))
        self.event(at, "delivery_sent", alert_id=aid, call_id=cid, delivery_id=did, person_id=person)
        if report:
            self.event(at + timedelta(seconds=5), f"delivery_{report}", alert_id=aid, call_id=cid,
                       delivery_id=did, person_id=person)
        return did

    def confirm(self, aid: int, cid: int, at: datetime, level: int = 0, via: str = "sms_reply") -> None:
        self.event(at, "call_confirmed", alert_id=aid, call_id=cid, via=via, level=level)

    def report(self, **kw: Any) -> AuditReport:
        return build_report(self.inp, load_labels(), **kw)


def table(report: AuditReport, key: str) -> list[dict[str, Any]]:
    return report.table(key).rows


def summary(report: AuditReport) -> dict[str, tuple[Any, Any]]:
    return {r["key"]: (r["real"], r["drill"]) for r in table(report, "summary")}


def test_issues_count_warnings_and_reached_messages_per_step_and_channel() -> None:
    log = Log()
    # Two imminent warnings and one forecast; a drill apart.
    for aid, step, at in ((1, "imminent", m(0)), (2, "imminent", m(60)), (3, "forecast", m(120))):
        log.alert(aid, step, at, opened=1)
    log.alert(4, "imminent", m(180), status="Exercise", opened=1)
    c1 = log.call(1, 1, m(0), VA)
    log.send(1, c1, 1, m(0), report="delivered")
    log.send(1, c1, 1, m(0), channel="wecom")
    log.send(1, c1, 1, m(10), purpose="escalation")  # a resend: one more 人次, same person
    c2 = log.call(2, 2, m(60), VA)
    log.send(2, c2, 2, m(60), report="undelivered")  # did not arrive: not a 人次
    did = log.send(2, c2, 2, m(61))
    log.inp.events = [e for e in log.inp.events if e.delivery_id != did]  # sent → failed instead
    log.event(m(61), "delivery_failed", alert_id=2, call_id=c2, delivery_id=did, person_id=2)
    c3 = log.call(3, 5, m(120), TOWN, step="forecast")
    log.send(3, c3, 5, m(120), step="forecast")
    log.send(1, None, 5, m(1), purpose="gap_notice")  # not the warning: no 人次
    c4 = log.call(4, 1, m(180), VA)
    log.send(4, c4, 1, m(180))
    r = log.report()
    rows = [(x["kind"], x["step"], x["channel"], x["issues"], x["person_times"], x["people"], x["escalation_times"],
             x["sent"], x["delivered"], x["undelivered"], x["failed"]) for x in table(r, "issues")]
    assert rows == [
        ("实战", "预报(6h)", "短信", 1, 1, 1, 0, 1, 0, 0, 0),
        ("实战", "预报(6h)", "合计", 1, 1, 1, 0, 1, 0, 0, 0),
        # 期: warning 2 reached nobody by SMS, so the SMS row counts 1; the step total counts both.
        ("实战", "临灾预警(1h)", "短信", 1, 2, 1, 1, 3, 1, 1, 1),
        ("实战", "临灾预警(1h)", "企业微信", 1, 1, 1, 0, 1, 0, 0, 0),
        ("实战", "临灾预警(1h)", "合计", 2, 3, 1, 1, 4, 1, 1, 1),
        ("实战", "合计", "合计", 3, 4, 2, 1, 5, 1, 1, 1),
        ("演练", "临灾预警(1h)", "短信", 1, 1, 1, 0, 1, 0, 0, 0),
        ("演练", "临灾预警(1h)", "合计", 1, 1, 1, 0, 1, 0, 0, 0),
        ("演练", "合计", "合计", 1, 1, 1, 0, 1, 0, 0, 0),
    ]
    s = summary(r)
    assert s["warnings"] == (3, 1) and s["warnings_imminent"] == (2, 1) and s["person_times_forecast"] == (1, 0)


def test_confirmation_timing_in_time_carried_and_old_databases() -> None:
    log = Log()
    log.alert(1, "imminent", m(0), opened=4, carried=(4,))
    a = log.call(1, 1, m(0), VA)
    b = log.call(1, 2, m(0), VA)
    c = log.call(1, 3, m(0), GA)
    d = log.call(1, 4, m(0), VB, state="confirmed", note="carried over from alert 0")
    assert d == 4  # the call calls_opened named as carried
    log.send(1, a, 1, m(2))  # the gateway was slow: timing counts from the send
    log.send(1, b, 2, m(0))
    log.send(1, c, 3, m(0))
    log.confirm(1, a, m(5))  # 3 minutes after his send
    log.confirm(1, b, m(12), level=1)  # after the resend: confirmed, not in time
    log.event(m(10), "call_escalated", alert_id=1, call_id=b, level=1, action="resend")
    for lv, action in ((1, "resend"), (2, "deputy"), (3, "superior")):
        log.event(m(5 * lv + 5), "call_escalated", alert_id=1, call_id=c, level=lv, action=action)
    log.event(m(15), "escalation_gap", alert_id=1, call_id=c, action="deputy")
    log.event(m(25), "call_to_duty_room", alert_id=1, call_id=c, level=4, action="duty_room")
    r = log.report()
    steps = table(r, "confirm_steps")[0]
    assert (steps["calls"], steps["confirmed"], steps["confirmed_in_time"], steps["carried"], steps["timed"]) == (
        4, 3, 2, 1, 2)
    assert (steps["median_minutes"], steps["p90_minutes"], steps["max_minutes"]) == (7.5, 12.0, 12.0)
    esc = [(x["level"], x["action"], x["calls"], x["confirmed_after"], x["no_recipient"]) for x in table(r, "escalations")]
    assert esc == [(1, "再次提醒", 2, 1, 0), (2, "替补叫应", 1, 0, 1), (3, "上级督办", 1, 0, 0), (4, "转值班室", 1, 0, 0)]
    silent = table(r, "never_confirmed")
    assert [(x["name"], x["village"], x["role"], x["phone"], x["max_level"], x["outcome"]) for x in silent] == [
        ("赵组长", "辰龙关村", "组长", "+86 139****0004", 4, "未确认·已转值班室")]
    recon = {x["check"][:5]: (x["from_events"], x["from_tables"], x["result"]) for x in table(r, "reconciliation")}
    assert recon["应叫应人次"] == (4, 4, "一致") and recon["已确认(c"] == (3, 1, "不一致")  # rows were never marked
    # A database from before the calls_opened event: the row's note says it was carried over.
    log.inp.events = [e for e in log.inp.events if e.kind != "calls_opened"]
    r = log.report()
    assert table(r, "confirm_steps")[0]["carried"] == 1
    assert {x["result"] for x in table(r, "reconciliation") if x["check"].startswith("应叫应")} == {"无可核对事件"}


def test_places_reached_by_whom_and_loudspeakers() -> None:
    log = Log()
    log.alert(1, "imminent", m(0), opened=2)
    a = log.call(1, 1, m(0), VA)  # 辰龙关村: his SMS undelivered, reached only through his deputy
    log.send(1, a, 1, m(0), report="undelivered")
    log.send(1, a, 2, m(10), purpose="escalation")  # deputy 李主任, same village
    b = log.call(1, 4, m(0), VB)  # 界亭驿村: only the superior (a township head) was reached
    log.send(1, b, 4, m(0), report="undelivered")
    log.send(1, b, 5, m(20), purpose="escalation")
    log.event(m(0), "coverage_gap", alert_id=1, gaps=[{"region": GA, "role": "group_leader", "level": "group"}])
    # Loudspeakers: one in 界亭驿村 plays late (not reached in time), a fallback alert folds in.
    log.inp.speaker_commands += [
        SpeakerCommandRow(1, "w1-x", 1, "SPK-1", VB, "imminent", "played", None, True, False),
        SpeakerCommandRow(2, "w1-y", 1, "SPK-2", VB, "imminent", "no_ack", "no_ack", False, True)]
    log.event(m(1), "speaker_played", alert_id=1, cmd_id="w1-x", village=VB, late=True)
    log.event(m(2), "speaker_fallback_opened", alert_id=7, for_alert=1)
    fb = log.call(7, 4, m(2), VB)
    log.event(m(2), "speaker_fallback", alert_id=1, call_id=fb, person_id=4, call="opened")
    log.send(7, fb, 4, m(2))
    log.confirm(7, fb, m(4))
    log.inp.feedback.append(FeedbackRow(1, fb, 7, 5))
    log.event(m(6), "feedback_received", alert_id=7, call_id=fb, people_moved=5)
    r = log.report()
    villages = {x["village"]: x for x in table(r, "coverage_villages")}
    assert villages["辰龙关村"]["units_reached"] == 1 and villages["辰龙关村"]["sms"] == 1
    assert villages["辰龙关村"]["gaps"] == 1  # the group's gap belongs to its village
    # 界亭驿村: the fallback SMS to 陈书记 reached it; the superior's message and the late play did not count.
    assert villages["界亭驿村"]["units_reached"] == 1 and villages["界亭驿村"]["speaker"] == 0
    assert villages["界亭驿村"]["people_moved"] == 0  # the fallback call's 反馈 is not a warning call's…
    assert summary(r)["people_moved"] == (5, None)  # …but the warning's total has it
    sp = table(r, "speakers")[0]
    assert (sp["commands"], sp["played_in_time"], sp["played_late"], sp["not_played"], sp["coverage"],
            sp["fallback_calls"], sp["fallback_confirmed"]) == (2, 0, 1, 1, 0.0, 1, 1)
    assert [(x["device_id"], x["state"], x["fallback"]) for x in table(r, "speakers_not_played")] == [
        ("SPK-2", "超时未回执", True)]
    towns = table(r, "coverage_townships")
    assert [(x["township"], x["units"], x["units_reached"], x["target_met"]) for x in towns] == [("官庄镇", 2, 2, True)]
    lowered = log.report(coverage_target=1.0)
    assert table(lowered, "coverage_townships")[0]["target_met"] is True
    # Without the fallback SMS, 界亭驿村 is not reached: 50 % against the 95 % target.
    log.inp.events = [e for e in log.inp.events if not (e.kind == "delivery_sent" and e.alert_id == 7)]
    r = log.report()
    assert [(x["units_reached"], x["coverage"], x["target_met"]) for x in table(r, "coverage_townships")] == [
        (1, 0.5, False)]


def test_events_without_their_rows_are_reported_not_hidden() -> None:
    log = Log()
    log.alert(1, "imminent", m(0), opened=1)
    c = log.call(1, 1, m(0), VA)
    log.send(1, c, 1, m(0))
    log.event(m(0), "delivery_sent", alert_id=1, call_id=c, delivery_id=999, person_id=1)
    r = log.report()
    assert table(r, "reconciliation")[-1] == {"alert_id": None, "check": "delivery rows missing for events",
                                             "from_events": 1, "from_tables": 0, "result": "不一致"}


def test_stats_and_masking() -> None:
    assert median([]) is None and percentile([], 90) is None
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9  # nearest rank: an observed value
    assert percentile([5.0], 90) == 5.0 and percentile([3, 1, 2], 50) == 2
    assert mask_phone("+8613900000001") == "+86 139****0001"
    assert mask_phone("13900000001") == "139****0001"
    assert mask_phone("+14155550123") == "+14*******23"
    assert mask_phone("07452345678") == "074****5678" and mask_phone("1234") == "****"


def test_labels_override_key_by_key(tmp_path: Path) -> None:
    mine = tmp_path / "report.toml"
    mine.write_text('title = "汛期预警审计"\n[tables.issues.columns]\nperson_times = "覆盖人次"\n', encoding="utf-8")
    labels = load_labels(mine)
    assert labels.title == "汛期预警审计" and labels.table("issues")["columns"]["person_times"] == "覆盖人次"
    assert labels.table("issues")["columns"]["issues"] == "期数"  # untouched keys keep the shipped text
    mine.write_text('[tables.issues.columns]\nperson_tmes = "x"\n', encoding="utf-8")
    with pytest.raises(LabelsError, match="person_tmes: unknown key"):
        load_labels(mine)
    mine.write_text("title = 3\n", encoding="utf-8")
    with pytest.raises(LabelsError, match="title: must be text"):
        load_labels(mine)


def test_cli_times_and_targets() -> None:
    assert parse_time("2026-07-01 10:00", 8) == T0  # local (Beijing) unless an offset is given
    assert parse_time("2026-07-01T02:00:00+00:00", 8) == T0
    assert parse_time("2026-07-01", 8) == T0 - timedelta(hours=10)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("tomorrow", 8)
    assert parse_target("0.95") == 0.95 and parse_target("95") == 0.95 and parse_target("90%") == 0.9
    for bad in ("0", "150%", "abc", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_target(bad)


def test_axis_tops_are_round() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 3, 4, 5, 9, 1668, 2000, 2001)] == [4, 4, 4, 4, 8, 20, 2000, 2000, 4000]


def test_charts_escape_text_and_skip_what_they_cannot_draw() -> None:
    tz = datetime.now(UTC).astimezone().tzinfo
    assert timeline({}, tz, label="x") == ""  # type: ignore[arg-type]
    svg = timeline({"imminent": {"label": "<临灾>", "calls": 2, "start": T0, "confirmed_at": [m(3)],
                                 "minutes": [3.0]}}, tz, label="进度")  # type: ignore[arg-type]
    assert svg.startswith('<svg class="chart timeline"') and "&lt;临灾&gt;" in svg and "<临灾>" not in svg
    assert svg.count('class="line"') == 1
    bars = coverage_bars([{"township": "官庄镇", "coverage": 0.5, "units": 2, "units_reached": 1},
                          {"township": "无数据", "coverage": None, "units": 0, "units_reached": 0}], 0.95,
                         label="覆盖", target_label="目标")
    assert bars.count('class="bar"') == 1 and 'class="target"' in bars and "#c62828" in bars
    features = [{"code": "1", "name": "甲村", "wkt": "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))", "status": "confirmed"},
                {"code": "2", "name": "乙村", "wkt": "NOT WKT", "status": "reached"},
                {"code": "3", "name": "丙村", "wkt": "POINT(2 2)", "status": "not_reached"}]
    svg = village_map(features, label="地图", legend={"confirmed": "已确认"})
    assert svg.count('class="village"') == 2 and 'data-code="2"' not in svg
    assert village_map(features[1:2], label="地图", legend={}) == ""


def test_html_escapes_what_came_from_outside() -> None:
    log = Log()
    log.alert(1, "imminent", m(0), opened=1)
    log.inp.alerts[0] = AlertRow(1, "A-1", "Actual", "Alert", "api", "rainstorm", "yellow", "imminent",
                                 "<script>alert(1)</script>暴雨", m(0), "active")
    c = log.call(1, 1, m(0), VA)
    log.send(1, c, 1, m(0))
    page = render_html(log.report())
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;暴雨" in page
    assert "<script" not in page.lower().replace("&lt;script", "")  # the page itself runs no script
    assert 'http-equiv="Content-Security-Policy"' in page


def test_an_empty_scope_still_makes_a_report() -> None:
    r = Log().report()
    assert summary(r)["warnings"] == (None, None) and all(not t.rows for t in r.tables[1:])
    page = render_html(r)
    assert "<svg" not in page and page.count('<p class="empty">无</p>') == len(r.tables) - 1
