"""End to end through the real paths, told the way a phone sees it: CAP over HTTP → plan →
Tencent SDK → simulator → the official's handset → uplink reply webhook → 叫应 confirmed;
silence → fenced escalation as the clock runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlmodel import col, func, select

from devtools.demo.capgen import cap_xml
from support.phones import T0, CountyHarness, county, imminent
from support.users import bearer, token_for
from warnd.db.models import Event, Inbound

SECRETARY, HEAD, GRID, GROUP = "+8613900000001", "+8613900000002", "+8613900000003", "+8613900000004"


@pytest.fixture
async def c(db_url: str) -> AsyncIterator[CountyHarness]:
    async with county(db_url) as harness:
        yield harness


async def test_api_refuses_without_token_and_bad_xml_changes_nothing(c: CountyHarness) -> None:
    r = await c.http.post("/api/v1/alerts", data=imminent(), headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    body = await c.warn(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x", expect=400)
    assert body["field"] == "xml"
    # A code of this county that no region has: recorded for the duty room, nobody called.
    body = await c.warn(cap_xml("RS-9", T0, T0, "黄色", "h", "i", ["431222999999"]), expect=202)
    assert "431222999999" in body["unknown_codes"] and body["state"] == "out_of_area" and body["calls"] == 0
    async with c.app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Event).where(Event.kind == "alert_accepted"))).one() == 0
        assert (await s.exec(select(func.count()).select_from(Event).where(Event.kind == "alert_out_of_area"))).one() == 1
    await c.phone(SECRETARY).expect_no_sms()


async def test_warning_reaches_officials_once_and_reply_confirms(c: CountyHarness) -> None:
    body = await c.warn(imminent())
    assert body["calls"] == 4 and body["step"] == "imminent"
    for number in (SECRETARY, HEAD, GRID, GROUP):
        assert "请回复1" in (await c.phone(number).expect_sms("临灾")).body

    # The feed retries the same message: same alert, nothing new is sent.
    again = await c.warn(imminent(), expect=200)
    assert again == {**again, "id": body["id"], "created": False}

    assert await c.phone(SECRETARY).reply("收到！") == 200
    calls = await c.calls(body["id"])
    assert calls["张书记"]["state"] == "confirmed" and calls["张书记"]["confirmed_via"] == "sms_reply"
    assert calls["李主任"]["state"] == "open"
    for number in (SECRETARY, HEAD, GRID, GROUP, "+8613900000005"):
        await c.phone(number).expect_no_sms()  # a retry of the POST sent nothing


async def test_silence_escalates_each_rung_exactly_once(c: CountyHarness) -> None:
    body = await c.warn(imminent())
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_sms("临灾")
    await c.phone(SECRETARY).reply("1")

    await c.fast_forward(minutes=10, seconds=1)  # the yellow imminent window
    resends = [await c.phone(number).expect_sms("再次提醒") for number in (HEAD, GRID, GROUP)]
    # The resend rung's three texts are one text, so they went out as one provider request
    # (one SessionContext for the batch): a storm's silent officials are not one request each.
    contexts = {m.context for m in c.sim.messages if m.body == resends[0].body}
    assert len({m.body for m in resends}) == 1 and len(contexts) == 1, contexts
    assert next(iter(contexts)).startswith("batch:")
    await c.phone(SECRETARY).expect_no_sms()
    # A second pass at the same instant (a stale timer, a second worker) fires nothing.
    assert await c.app.escalation.fire_due() == 0

    await c.phone(HEAD).reply("收到")
    await c.fast_forward(minutes=5)
    # 王网格's deputy is 李主任; 赵组长 has none, so his call moves straight on to his superior.
    deputy = await c.phone(HEAD).expect_sms("替补叫应")
    assert "王网格" in deputy.body
    calls = await c.calls(body["id"])
    assert calls["王网格"]["level"] == 2 and calls["李主任"]["state"] == "confirmed"

    # The deputy answers for 王网格 (his reply names the call's short code).
    await c.phone(HEAD).reply(f"收到 {calls['王网格']['short_code']}")
    assert (await c.calls(body["id"]))["王网格"]["state"] == "confirmed"


async def test_duplicate_webhook_and_stranger_change_nothing(c: CountyHarness) -> None:
    body = await c.warn(imminent())
    await c.phone(GRID).expect_sms("临灾")
    for _ in range(2):
        await c.phone(GRID).reply("1", time_=1782871200)
    await c.phone("+8613811112222").reply("1")
    async with c.app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Inbound))).one() == 2
        confirms = (await s.exec(select(func.count()).select_from(Event).where(Event.kind == "call_confirmed"))).one()
    assert confirms == 1
    forged = await c.http.post("/webhooks/tencent/sms/wrong-token-000000000/reply", json={
        "mobile": "13900000002", "nationcode": "86", "text": "1", "time": 1, "sign": "", "extend": ""})
    assert forged.status == 403
    assert (await c.calls(body["id"]))["李主任"]["state"] == "open"


async def test_duty_officer_ack_and_cancel_notify_the_reached(c: CountyHarness) -> None:
    body = await c.warn(imminent())
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_sms("临灾")
    calls = await c.calls(body["id"])
    # The shared config token is for machines: no person's decision may be made with it.
    r = await c.http.post(f"/api/v1/calls/{calls['赵组长']['id']}/ack", json={"note": "x"}, headers=c.machine)
    assert r.status == 403
    r = await c.http.post(f"/api/v1/alerts/{body['id']}/cancel", json={"reason": "x"}, headers=c.machine)
    assert r.status == 403
    r = await c.http.post(f"/api/v1/calls/{calls['赵组长']['id']}/ack", json={"note": "电话联系，已收到"},
                          headers=c.officer)
    assert r.status == 200 and (await r.json())["confirmed"] is True
    r = await c.http.post(f"/api/v1/alerts/{body['id']}/cancel", json={"reason": "雨停"}, headers=c.officer)
    assert r.status == 202 and (await r.json())["state"] == "pending"  # the two-person rule
    approval = (await r.json())["approval"]
    leader = bearer(await token_for(c.app.db, "lidb", "approver"))
    r = await c.http.post(f"/api/v1/approvals/{approval}/approve", headers=leader)
    assert r.status == 200 and (await r.json())["cancelled_calls"] == 3
    # The event log names who did each.
    async with c.app.db.read() as s:
        actors = {e.kind: (e.data.get("actor"), e.data.get("approved_by")) for e in (await s.exec(select(Event).where(
            col(Event.kind).in_(["alert_accepted", "call_confirmed", "alert_cancelled"])))).all()}
    assert actors == {"alert_accepted": ("api-token", None), "call_confirmed": ("wangzb", None),
                      "alert_cancelled": ("wangzb", "lidb")}
    # The per-recipient spacing holds the notices until 20 s after the warning itself.
    await c.fast_forward(seconds=21)
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_sms("预警解除")
    await c.fast_forward(hours=1)
    assert await c.app.escalation.fire_due() == 0  # cancelled calls never escalate
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_no_sms()
    r = await c.http.get(f"/api/v1/alerts/{body['id']}", headers=c.officer)
    summary = await r.json()
    assert summary["state"] == "cancelled" and summary["steps"]["imminent"]["confirmed"] == 1


async def test_window_counts_from_send_and_wakes_the_escalation_module(c: CountyHarness) -> None:
    # Planned with a send grace (deadline +20 min); once the SMS leaves the deadline moves to
    # sent + 10 min. Nobody replies, so only the outbox's wake-up can tell the sleeping
    # escalation module about the earlier deadline.
    await c.warn(imminent())
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_sms("临灾")
    await c.fast_forward(minutes=10, seconds=1)
    for number in (SECRETARY, HEAD, GRID, GROUP):
        await c.phone(number).expect_sms("再次提醒")
