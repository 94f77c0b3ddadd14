"""The console's read side over HTTP: GET /api/v1/alerts (pagination, filters, real and drill
apart, bad filters are 400 problem+json), the 预警列表 page, the 叫应 board (names, phones and
deputies, overdue, escalation rungs, the "phoned and confirmed" form under the officer's
name), its live stream, the alarms (a call at the duty room, a provider refusing everything),
运行状况 and 汛前检查."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import escape
from typing import Any

import pytest
from sqlmodel import select

from devtools.demo.capgen import cap_xml
from support.channel_stack import AUTH, T0, Stack, imminent
from support.phones import county
from support.phones import imminent as phones_imminent
from support.users import PASSWORD, add_user, bearer, token_for
from warnd.console.status import ALARM_SOURCES
from warnd.db.models import Alert, Call, Delivery, Event, Feedback, Region, Speaker, SpeakerCommand
from warnd.views.alarms import Alarm, source_alarms
from warnd.views.health import feeds_view
from warnd.views.readiness import STATUS_ZH, Names, check_readiness, readiness_json

VILLAGE = "431222100200"


def cap(identifier: str, *, days_ago: int = 0, status: str = "Actual", areas: tuple[str, ...] = (VILLAGE,),
        colour: str = "黄色") -> bytes:
    sent = T0 - timedelta(days=days_ago)
    return cap_xml(identifier, sent, T0 + timedelta(hours=2), colour, f"暴雨预警 {identifier}", "请组织转移。",
                   list(areas), step="imminent", status=status)


async def get_json(st: Stack, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    r = await st.http.get(path, headers=headers if headers is not None else st.officer)
    return r.status, await r.json(content_type=None)


async def test_alert_list_pages_and_filters(st: Stack) -> None:
    # Five real warnings on five Beijing days, two drills, one elsewhere in the county.
    async with st.engine.db.session() as s, s.begin():
        s.add(Region(code="431222101", name="七甲坪镇", level="township", parent_code="431222"))
        s.add(Region(code="431222101200", name="桃坪村", level="village", parent_code="431222101"))
    st.engine.roster.invalidate()
    for i in range(5):
        await st.post_cap(cap(f"R-{i}", days_ago=i))
    await st.post_cap(cap("D-0", status="Exercise"))
    await st.post_cap(cap("D-1", status="Test", days_ago=1))
    await st.post_cap(cap("ELSEWHERE", areas=("431222101200",)))

    status, body = await get_json(st, "/api/v1/alerts?per_page=3")
    assert status == 200
    assert (body["total"], body["pages"], body["page"], body["per_page"]) == (8, 3, 1, 3)
    first = [a["identifier"] for a in body["alerts"]]
    status, body2 = await get_json(st, "/api/v1/alerts?per_page=3&page=3")
    assert len(body2["alerts"]) == 2
    status, body_all = await get_json(st, "/api/v1/alerts?per_page=200")
    ids = [a["identifier"] for a in body_all["alerts"]]
    assert ids[:3] == first and len(set(ids)) == 8
    sents = [a["sent"] for a in body_all["alerts"]]
    assert sents == sorted(sents, reverse=True)  # newest first

    _, real = await get_json(st, "/api/v1/alerts?kind=real")
    _, drill = await get_json(st, "/api/v1/alerts?kind=drill")
    assert real["total"] == 6 and all(a["real"] for a in real["alerts"])
    assert {a["identifier"] for a in drill["alerts"]} == {"D-0", "D-1"}
    assert {a["status_zh"] for a in drill["alerts"]} == {"演练", "测试"}

    # Dates are Beijing days of `sent`: T0 is 2026-07-01 10:00 Beijing.
    _, day = await get_json(st, "/api/v1/alerts?from=2026-06-30&to=2026-06-30")
    assert {a["identifier"] for a in day["alerts"]} == {"R-1", "D-1"}
    _, since = await get_json(st, "/api/v1/alerts?from=2026-06-29&kind=real")
    assert {a["identifier"] for a in since["alerts"]} == {"R-0", "R-1", "R-2", "ELSEWHERE"}

    # The township filter: 官庄镇 (431222100) holds 辰龙关村; 431222101 is another township.
    _, town = await get_json(st, "/api/v1/alerts?township=431222101")
    assert [a["identifier"] for a in town["alerts"]] == ["ELSEWHERE"]
    assert town["alerts"][0]["townships"] == [{"code": "431222101", "name": "七甲坪镇"}]
    _, town = await get_json(st, "/api/v1/alerts?township=431222100&per_page=200")
    assert town["total"] == 7 and town["alerts"][0]["townships"] == [{"code": "431222100", "name": "官庄镇"}]

    # Counts: every real warning here called the village's officials.
    row = next(a for a in body_all["alerts"] if a["identifier"] == "R-0")
    assert row["counts"]["called"] >= 4 and row["counts"]["confirmed"] == 0
    assert row["state"] == "active" and row["step_zh"] == "临灾预警" and row["colour_zh"] == "黄色"

    # The machine token may read the list (no personal data in it).
    status, _ = await get_json(st, "/api/v1/alerts", headers=AUTH)
    assert status == 200


@pytest.mark.parametrize(("query", "field"), [
    ("page=0", "page"), ("page=x", "page"), ("per_page=201", "per_page"), ("from=2026-13-01", "from"),
    ("to=yesterday", "to"), ("kind=fake", "kind"), ("township=4312", "township"), ("state=gone", "state"),
    ("from=2026-07-02&to=2026-07-01", "from"), ("page=%EF%BC%91", "page"),
])
async def test_bad_filters_are_400_naming_the_parameter(st: Stack, query: str, field: str) -> None:
    r = await st.http.get(f"/api/v1/alerts?{query}", headers=st.officer)
    assert r.status == 400 and r.content_type == "application/problem+json"
    assert (await r.json(content_type=None))["field"] == field


async def test_list_page_shows_real_and_drill_apart(st: Stack) -> None:
    await st.post_cap(cap("R-PAGE"))
    await st.post_cap(cap("D-PAGE", status="Exercise"))
    r = await st.http.get("/console/alerts", headers=st.officer)
    html = await r.text()
    assert r.status == 200 and "暴雨预警 R-PAGE" in html and "D-PAGE" not in html
    html = await (await st.http.get("/console/alerts?kind=drill", headers=st.officer)).text()
    assert "暴雨预警 D-PAGE" in html and "R-PAGE" not in html and "演练" in html
    r = await st.http.get("/console/alerts?from=nonsense", headers=st.officer)
    assert r.status == 400 and "from must be a date" in await r.text()


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, name
    return m.group(1)


async def test_board_call_now_phoned_confirmation_and_alarm(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("BOARD-1", colour="红色")))["id"]
    await add_user(st.engine.db, "zhangwei", "duty_officer", display_name="张伟")
    board = f"/console/alerts/{alert_id}"
    calls = await st.calls(alert_id)
    async with st.engine.db.session() as s, s.begin():  # 反馈 as the confirm page stores it
        s.add(Feedback(call_id=calls["王网格"]["id"], alert_id=alert_id, person_id=calls["王网格"]["person_id"],
                       region_code=VILLAGE, actions=["transferred", "gong"], people_moved=12, note="三户已转移",
                       created_at=T0))
    html = await (await st.http.get(board, headers=st.officer)).text()
    assert "辰龙关村" in html and "张书记" in html and "村支书" in html
    assert "目前没有超时未应答的责任人" in html
    assert "已转移、已鸣锣吹哨，转移 12 人：三户已转移" in html and 'data-count="people_moved">12<' in html

    # Nobody answers: the ladder runs to the duty room.
    for _ in range(6):
        await st.clock.advance(timedelta(minutes=11))
        st.engine.kick()
        await st.engine.runner.settle()
    calls = await st.calls(alert_id)
    assert calls["张书记"]["state"] == "duty_room"
    html = await (await st.http.get(board, headers=st.officer)).text()
    call_now = html.split('id="call-now-title"')[1].split("</section>")[0]
    assert "张书记" in call_now and "已转值班室" in call_now
    assert 'href="tel:+8613900000001">13900000001</a>' in call_now  # the official's number
    assert "替补 李主任" in call_now  # and the deputy's
    assert "通知替补人：李主任" in html  # who each rung notified

    # The alarm: one per official at the duty room, critical, with a link to the board.
    r = await st.http.get("/console/alarms/stream?once=1", headers=st.officer)
    assert r.status == 200 and r.content_type == "text/event-stream"
    text = await r.text()
    alarms = json.loads("".join(line[6:] for line in text.splitlines() if line.startswith("data: ")))
    duty = [a for a in alarms if a["kind"] == "duty_room"]
    assert {a["level"] for a in duty} == {"critical"} and any("张书记" in a["text"] for a in duty)
    assert all(a["link"].startswith(board) for a in duty)

    # Phoned and confirmed, by a logged-in officer with the form (CSRF token, note required).
    login = await st.http.get(f"/login?next={board}")
    login_html = await login.text()
    r = await st.http.post("/login", allow_redirects=False, data={
        "name": "zhangwei", "password": PASSWORD, "csrf_token": hidden(login_html, "csrf_token"), "next": board})
    assert r.status == 303
    page = await (await st.http.get(board)).text()
    csrf = hidden(page, "csrf_token")
    call_id = calls["张书记"]["id"]
    r = await st.http.post(f"/console/calls/{call_id}/ack", data={"csrf_token": csrf, "alert": str(alert_id),
                                                                 "note": "  "}, allow_redirects=False)
    assert r.status == 400 and "备注" in await r.text()
    assert (await st.calls(alert_id))["张书记"]["state"] == "duty_room"
    r = await st.http.post(f"/console/calls/{call_id}/ack", data={
        "csrf_token": csrf, "alert": str(alert_id), "note": "电话联系张书记本人，已组织转移"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"{board}?ack=ok#call-{call_id}"
    async with st.engine.db.read() as s:
        ev = (await s.exec(select(Event).where(Event.kind == "call_confirmed", Event.call_id == call_id))).one()
        call = await s.get(Call, call_id)
    assert ev.data["actor"] == "zhangwei" and ev.data["via"] == "duty_officer"
    assert call is not None and call.note == "电话联系张书记本人，已组织转移"
    page = await (await st.http.get(f"{board}?ack=ok")).text()
    assert "已登记电话叫应" in page and "值班员电话确认" in page
    call_now = page.split('id="call-now-title"')[1].split("</section>")[0]
    assert f'id="callnow-{call_id}"' not in call_now and 'id="callnow-' in call_now  # the others still wait


async def _all_deliveries(c: Any) -> list[Delivery]:
    async with c.app.db.read() as s:
        return list((await s.exec(select(Delivery))).all())


async def test_provider_refusing_everything_is_a_critical_alarm(db_url: str) -> None:
    # The Tencent simulator with the standard 6-character cap on a template variable: every
    # warning text is refused (FailedOperation.TemplateParamSetNotMatchApprovedTemplate or alike).
    async with county(db_url) as c:
        c.sim.max_param_chars = 6
        await c.warn(phones_imminent("REFUSED-1"))
        await c.settle()
        assert {d.state for d in await _all_deliveries(c) if d.purpose == "warning"} == {"failed"}
        r = await c.http.get("/console/alarms/stream?once=1", headers=c.officer)
        text = await r.text()
        alarms = json.loads("".join(line[6:] for line in text.splitlines() if line.startswith("data: ")))
        loud = [a for a in alarms if a["kind"] == "provider_failing"]
        assert loud and loud[0]["level"] == "critical"
        # The four warnings, and the duty room's own notice about them once it was tried (the
        # same provider refuses it too).
        said = re.search(r"短信平台拒绝了最近30分钟内的全部(\d+)条消息", loud[0]["text"])
        assert said and int(said.group(1)) in (4, 5)
        assert "TemplateParameterLengthLimit" in loud[0]["text"]
        html = await (await c.http.get("/console/health", headers=c.officer)).text()
        assert "全部失败" in html
        # The list shows the failures against the warning too.
        body = await (await c.http.get("/api/v1/alerts", headers=c.officer)).json()
        assert body["alerts"][0]["counts"]["failed"] > 0 and body["alerts"][0]["counts"]["delivered"] == 0


async def test_board_stream_sends_the_board_and_readiness_and_health_render(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("LIVE-1")))["id"]
    r = await st.http.get(f"/console/alerts/{alert_id}/stream?once=1", headers=st.officer)
    text = await r.text()
    assert r.status == 200 and text.startswith("retry: 3000") and "event: board" in text and "张书记" in text
    r = await st.http.get("/console/alerts/999999/stream?once=1", headers=st.officer)
    assert r.status == 404
    r = await st.http.get("/console/alerts/999999", headers=st.officer)
    assert r.status == 404
    html = await (await st.http.get("/console/readiness", headers=st.officer)).text()
    assert "汛前检查" in html and "结论" in html and "warnd check" in html
    html = await (await st.http.get("/console/health", headers=st.officer)).text()
    assert "信息源" in html and "喇叭" in html and "消息平台" in html
    # /console/board with one active warning goes straight to its board.
    r = await st.http.get("/console/board", headers=st.officer, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (302, f"/console/alerts/{alert_id}")
    # An auditor reads the board but gets no "phoned and confirmed" form.
    auditor = bearer(await token_for(st.engine.db, "shenji", "auditor"))
    html = await (await st.http.get(f"/console/alerts/{alert_id}", headers=auditor)).text()
    assert "张书记" in html and "/ack" not in html


async def test_board_shows_loudspeakers_per_village_and_gaps_by_name(st: Stack) -> None:
    alert_id = (await st.post_cap(imminent("SPK-1", colour="红色")))["id"]
    now = st.clock.now()
    async with st.engine.db.session() as s, s.begin():
        for i, (state, fallback) in enumerate([("played", False), ("failed", False), ("pending", True),
                                               ("sent", False)]):
            s.add(SpeakerCommand(cmd_id=f"c{i}", alert_id=alert_id, device_id=f"SPK-{i}", region_code=VILLAGE,
                                 village_code=VILLAGE, step="imminent", payload="{}", state=state,
                                 expires_at=now + timedelta(hours=1), created_at=now, fallback=fallback))
        companion = Alert(sender="x", identifier="SPK-1#speaker-fallback", sent=now, status="Actual",
                          msg_type="Alert", source="speaker_fallback", hazard="rainstorm", colour="yellow",
                          step="imminent", received_at=now, fallback_for_id=alert_id)
        s.add(companion)
        await s.flush()
        s.add(Call(alert_id=companion.id, person_id=1, step="imminent", role="village_secretary",
                   region_code=VILLAGE, ladder="standard", short_code="F1", created_at=now))
    html = await (await st.http.get(f"/console/alerts/{alert_id}", headers=st.officer)).text()
    speakers = html.split(f'data-speakers="{VILLAGE}">')[1].split("</h3>")[0]
    assert "播放 1" in speakers and "失败 1" in speakers and "离线 1" in speakers and "等待 1" in speakers
    assert "补叫待应答 1" in speakers
    assert 'data-count="speakers_played">1 / 4' in html
    # The township has no 乡镇党委书记 on the roster: the gap is named, not coded.
    assert "官庄镇 · 乡镇党委书记" in html and "431222100 ·" not in html


async def test_alarm_sources_plug_in_and_a_stale_source_alarms(st: Stack) -> None:
    app = st.http.server.app
    assert app is not None

    async def approvals(now: Any) -> list[Alarm]:
        return [Alarm("approval:7", "approval_waiting", "critical", "红色预警等待审核（编写人 张伟）", "/console")]

    app[ALARM_SOURCES].append(approvals)
    r = await st.http.get("/console/alarms", headers=st.officer)
    assert "红色预警等待审核" in await r.text()
    found = source_alarms([
        {"name": "cma", "kind": "cap_poll", "enabled": True, "status": "stale", "last_success_at": None},
        {"name": "push", "kind": "cap_push", "enabled": True, "status": "failing", "consecutive_failures": 3,
         "last_error": "HTTP 503", "last_error_at": None},
        {"name": "ok", "kind": "cap_poll", "enabled": True, "status": "ok"},
        {"name": "off", "kind": "cap_poll", "enabled": False, "status": "stale"},
        # Station rows have no source status (the demo's alarm stream failed on this one).
        {"name": "sl651", "kind": "sl651_gateway", "listening": {"tcp": 5001, "udp": None}, "stations": []},
        {"name": "telemetry", "kind": "telemetry_stations", "stations": []},
    ])
    assert [(a.kind, a.level) for a in found] == [("source_stale", "critical"), ("source_failing", "critical")]
    assert "cma 长时间没有更新" in found[0].text and "HTTP 503" in found[1].text


async def test_health_shows_the_fleet_by_village_and_stale_stations(st: Stack) -> None:
    now = st.clock.now()
    async with st.engine.db.session() as s, s.begin():
        s.add(Speaker(device_id="SPK-ON", region_code=VILLAGE, online=True, last_seen_at=now - timedelta(seconds=30)))
        s.add(Speaker(device_id="SPK-STALE", region_code=VILLAGE, online=True, last_seen_at=now - timedelta(hours=2)))
        s.add(Speaker(device_id="SPK-OFF", region_code="431222100200001", online=False, last_seen_at=now))
        s.add(Speaker(device_id="SPK-NEW", region_code=VILLAGE))
    html = await (await st.http.get("/console/health", headers=st.officer)).text()
    for key, n in {"total": 4, "online": 1, "offline": 1, "stale": 1, "never_seen": 1}.items():
        assert f'data-fleet="{key}">{n}<' in html, key
    assert "辰龙关村 · SPK-NEW：从未上线" in html and "辰龙关村·辰龙关村一组 · SPK-OFF：离线" in html
    assert "SPK-ON" not in html

    rows = feeds_view([{"name": "telemetry", "kind": "telemetry_stations", "stations": [
        {"station": "S1", "name": "辰龙关雨量站", "seconds_since_reading": 7200.0},
        {"station": "S2", "name": "官庄水位站", "seconds_since_reading": 60.0},
        {"station": "S3", "name": "新站", "seconds_since_reading": None}]},
        {"name": "cma", "kind": "cap_poll", "status": "stale"}], now)
    assert [s["stale"] for s in rows["stations"]] == [True, False, True]
    assert rows["feeds"][0]["bad"] and rows["feeds"][0]["status_zh"] == "长时间无更新"


async def test_readiness_page_is_the_warnd_check_result(st: Stack) -> None:
    result, inp = await check_readiness(st.engine.db, st.engine.policy, st.clock.now(),
                                        speaker_stale_after=timedelta(seconds=180), sources={})
    expected = readiness_json(result, Names(inp.regions, st.engine.roles))
    assert expected["findings"], "the small county has findings (no deputies, unfilled roles)"
    html = await (await st.http.get("/console/readiness", headers=st.officer)).text()
    assert f"结论：{STATUS_ZH[result.status]}" in html
    for f in expected["findings"]:
        assert f"<li>{escape(f['text'])}</li>" in html, f["text"]
        assert escape(f["title"]) in html
