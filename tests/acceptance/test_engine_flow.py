"""End to end through the real paths: CAP over HTTP → plan → Tencent SDK → simulator →
uplink reply webhook → 叫应 confirmed; silence → fenced escalation on the manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, func, select

from devtools.demo.capgen import cap_xml
from devtools.simulators.tencent_sms_api import TencentSmsApi
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.clock import ManualClock
from warnd.config import ApiCfg, County, DatabaseCfg, Settings, SmsCfg, TencentCfg
from warnd.db.models import Event, Inbound, Person, Region
from warnd.engine.service import Engine

TOKEN = "test-token-0123456789"
CB = "callback-secret-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


@dataclass
class Stack:
    engine: Engine
    clock: ManualClock
    sim: TencentSmsApi
    http: TestClient
    reply_url: str
    officer: dict[str, str]  # duty officer 王值班's personal token

    async def post_cap(self, body: bytes, token: str = TOKEN) -> tuple[int, dict]:
        r = await self.http.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {token}"})
        return r.status, await r.json(content_type=None)

    async def calls(self, alert_id: int) -> dict[str, dict]:
        r = await self.http.get(f"/api/v1/alerts/{alert_id}/calls", headers=self.officer)
        assert r.status == 200
        return {c["name"]: c for c in (await r.json())["calls"]}


def person(key: str, name: str, role: str, region: str, deputy: str | None = None) -> Person:
    return Person(key=key, name=name, phone=key, role=role, region_code=region, deputy_key=deputy, updated_at=T0)


@pytest.fixture
async def stack(db_url: str) -> AsyncIterator[Stack]:
    clock = ManualClock(T0)
    sim = TencentSmsApi()
    await sim.start()
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(db_url), api=ApiCfg((TOKEN,)),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://", 1)[1],
            callback_token=CB)),
    )
    engine = Engine.build(settings, clock=clock)
    async with engine.db.session() as s, s.begin():
        s.add_all([
            Region(code="431222", name="沅陵县", level="county"),
            Region(code="431222100", name="官庄镇", level="township", parent_code="431222"),
            Region(code="431222100200", name="辰龙关村", level="village", parent_code="431222100"),
            Region(code="431222100200001", name="辰龙关村一组", level="group", parent_code="431222100200"),
        ])
        s.add_all([
            person("+8613900000001", "张书记", "village_secretary", "431222100200", "+8613900000002"),
            person("+8613900000002", "李主任", "village_head", "431222100200", "+8613900000001"),
            person("+8613900000003", "王网格", "grid_worker", "431222100200", "+8613900000002"),
            person("+8613900000004", "赵组长", "group_leader", "431222100200001"),
            person("+8613900000005", "刘镇长", "township_head", "431222100"),
            person("+8613900000009", "值班员", "duty_officer", "431222"),
        ])
    await engine.start()
    officer = bearer(await token_for(engine.db, "wangzb", "duty_officer"))
    server = TestServer(make_app(engine))
    http = TestClient(server)
    await http.start_server()
    try:
        yield Stack(engine, clock, sim, http, str(http.make_url(f"/webhooks/tencent/sms/{CB}/reply")), officer)
    finally:
        await http.close()
        await engine.stop()
        await sim.stop()


def imminent(identifier: str = "RS-1", **kw: object) -> bytes:
    return cap_xml(identifier, T0, T0 + timedelta(hours=1), "黄色", "1小时内将出现暴雨", "请组织转移。",
                   ["431222100200"], step="imminent", **kw)  # type: ignore[arg-type]


async def test_api_refuses_without_token_and_bad_xml_changes_nothing(stack: Stack) -> None:
    status, body = await stack.post_cap(imminent(), token="wrong")
    assert status == 401
    status, body = await stack.post_cap(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x")
    assert status == 400 and body["field"] == "xml"
    status, body = await stack.post_cap(cap_xml("RS-9", T0, T0, "黄色", "h", "i", ["431222999999"]))
    assert status == 422 and "431222999999" in body["unknown_codes"]
    async with stack.engine.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Event).where(Event.kind == "alert_accepted"))).one() == 0


async def test_warning_reaches_officials_once_and_reply_confirms(stack: Stack) -> None:
    status, body = await stack.post_cap(imminent())
    assert status == 201 and body["calls"] == 4 and body["step"] == "imminent"
    msgs = await stack.sim.wait_for_messages(4, timeout=30)
    assert sorted(m.to for m in msgs) == [f"+861390000000{i}" for i in (1, 2, 3, 4)]
    assert all("请回复1" in m.body for m in msgs)

    # The feed retries the same message: same alert, nothing new is sent.
    status, again = await stack.post_cap(imminent())
    assert status == 200 and again == {**again, "id": body["id"], "created": False}

    code, _ = await stack.sim.send_reply(stack.reply_url, "+8613900000001", "收到！")
    assert code == 200
    calls = await stack.calls(body["id"])
    assert calls["张书记"]["state"] == "confirmed" and calls["张书记"]["confirmed_via"] == "sms_reply"
    assert calls["李主任"]["state"] == "open"
    # Only the four warnings went out: a retry of the POST sent nothing.
    assert len(stack.sim.messages) == 4


async def test_silence_escalates_each_rung_exactly_once(stack: Stack) -> None:
    _, body = await stack.post_cap(imminent())
    await stack.sim.wait_for_messages(4, timeout=30)
    await stack.sim.send_reply(stack.reply_url, "+8613900000001", "1")

    await stack.clock.advance(timedelta(minutes=10, seconds=1))  # yellow imminent window
    msgs = await stack.sim.wait_for_messages(7, timeout=30)  # resend to the three silent officials
    resent = {m.to for m in msgs[4:]}
    assert resent == {"+8613900000002", "+8613900000003", "+8613900000004"}
    assert all("再次提醒" in m.body for m in msgs[4:])
    # A second pass at the same instant (a stale timer, a second worker) fires nothing.
    assert await stack.engine.calls.fire_due() == 0

    await stack.sim.send_reply(stack.reply_url, "+8613900000002", "收到")
    await stack.clock.advance(timedelta(minutes=5))
    msgs = await stack.sim.wait_for_messages(9, timeout=30)
    # 王网格's deputy is 李主任; 赵组长 has none, so his call moves straight on to his superior.
    deputy = [m for m in msgs[7:] if "替补叫应" in m.body]
    assert [m.to for m in deputy] == ["+8613900000002"] and "王网格" in deputy[0].body
    calls = await stack.calls(body["id"])
    assert calls["王网格"]["level"] == 2 and calls["李主任"]["state"] == "confirmed"

    # The deputy answers for 王网格 (his reply names the call's short code).
    code = calls["王网格"]["short_code"]
    await stack.sim.send_reply(stack.reply_url, "+8613900000002", f"收到 {code}")
    calls = await stack.calls(body["id"])
    assert calls["王网格"]["state"] == "confirmed"


async def test_duplicate_webhook_and_stranger_change_nothing(stack: Stack) -> None:
    _, body = await stack.post_cap(imminent())
    await stack.sim.wait_for_messages(4, timeout=30)
    for _ in range(2):
        await stack.sim.send_reply(stack.reply_url, "+8613900000003", "1", time_=1782871200)
    await stack.sim.send_reply(stack.reply_url, "+8613811112222", "1")
    async with stack.engine.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Inbound))).one() == 2
        confirms = (await s.exec(select(func.count()).select_from(Event).where(Event.kind == "call_confirmed"))).one()
    assert confirms == 1
    forged = await stack.http.post("/webhooks/tencent/sms/wrong-token-000000000/reply", json={
        "mobile": "13900000002", "nationcode": "86", "text": "1", "time": 1, "sign": "", "extend": ""})
    assert forged.status == 403
    assert (await stack.calls(body["id"]))["李主任"]["state"] == "open"


async def test_duty_officer_ack_and_cancel_notify_the_reached(stack: Stack) -> None:
    _, body = await stack.post_cap(imminent())
    await stack.sim.wait_for_messages(4, timeout=30)
    calls = await stack.calls(body["id"])
    # The shared config token is for machines: no person's decision may be made with it.
    machine = {"Authorization": f"Bearer {TOKEN}"}
    r = await stack.http.post(f"/api/v1/calls/{calls['赵组长']['id']}/ack", json={"note": "x"}, headers=machine)
    assert r.status == 403
    r = await stack.http.post(f"/api/v1/alerts/{body['id']}/cancel", json={"reason": "x"}, headers=machine)
    assert r.status == 403
    auth = stack.officer
    r = await stack.http.post(f"/api/v1/calls/{calls['赵组长']['id']}/ack", json={"note": "电话联系，已收到"}, headers=auth)
    assert r.status == 200 and (await r.json())["confirmed"] is True
    r = await stack.http.post(f"/api/v1/alerts/{body['id']}/cancel", json={"reason": "雨停"}, headers=auth)
    assert r.status == 200 and (await r.json())["cancelled_calls"] == 3
    # The event log names who did each.
    async with stack.engine.db.read() as s:
        actors = {e.kind: e.data.get("actor") for e in (await s.exec(select(Event).where(
            col(Event.kind).in_(["alert_accepted", "call_confirmed", "alert_cancelled"])))).all()}
    assert actors == {"alert_accepted": "api-token", "call_confirmed": "wangzb", "alert_cancelled": "wangzb"}
    # The per-recipient throttle holds the notices until 20 s after the warning itself.
    await stack.clock.advance(timedelta(seconds=21))
    msgs = await stack.sim.wait_for_messages(8, timeout=30)
    assert sum("预警解除" in m.body for m in msgs) == 4
    await stack.clock.advance(timedelta(hours=1))
    assert await stack.engine.calls.fire_due() == 0  # cancelled calls never escalate
    r = await stack.http.get(f"/api/v1/alerts/{body['id']}", headers=auth)
    summary = await r.json()
    assert summary["state"] == "cancelled" and summary["steps"]["imminent"]["confirmed"] == 1


async def test_window_counts_from_send_and_wakes_the_escalation_worker(stack: Stack) -> None:
    # Planned with a send grace (deadline +20 min); once the SMS leaves the deadline moves to
    # sent + 10 min. Nobody replies, so only the outbox's wake-up can tell the sleeping
    # escalation worker about the earlier deadline.
    await stack.post_cap(imminent())
    await stack.sim.wait_for_messages(4, timeout=30)
    await stack.clock.advance(timedelta(minutes=10, seconds=1))
    msgs = await stack.sim.wait_for_messages(8, timeout=30)
    assert sorted(m.to for m in msgs[4:]) == [f"+861390000000{i}" for i in (1, 2, 3, 4)]
