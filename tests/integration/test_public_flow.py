"""The public reached through the real engine (support/public_stack: Tencent Cloud SDK against
the Tencent simulator, replies and delivery reports through our webhooks), on SQLite and
PostgreSQL.

The known answers of the red imminent warning over 官庄镇:
- listed in the area: 辰龙关村 20 danger-zone residents (转移地点 辰龙关村部) + 5 visitors in its
  一组 + 张书记 (an official, also on the danger-zone list); 界亭驿村 15 subscribers; one
  resident (…0001) is also a 界亭驿村 subscriber: one number, one message, under 辰龙关村.
  沿溪村 (5) is outside the warning.
- …0002 replied TD before the storm (and the list was re-imported since): opted out.
- 张书记's budget (per_day = 1 in this county) is taken by his own 叫应 SMS: over budget.
- …0003 is undeliverable (the carrier reports it failed).
- So: targeted 25 + 15 = 40; sent 39; delivered 38; 辰龙关村 23/25 = 0.92, 界亭驿村 15/15,
  overall 38/40 = 0.95 (meets the 95 % target).
"""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import func, select
from structlog.testing import capture_logs

from support.public_stack import GA, T1, VA, VB, VC, County_, build_county, stop_county
from warnd.audit import Scope, make_report
from warnd.db.models import Alert, Delivery, Event, PublicCampaign, PublicOptOut, PublicTarget
from warnd.public.fanout import PublicFanout
from warnd.public.importer import import_list

ZHANG = "+8613900000001"
OPTED, BAD = "+8613700000002", "+8613700000003"


def public(n: int) -> str:
    return f"+86137000000{n:02d}"


def write_list(path: Path) -> Path:
    rows = [["手机号码", "姓名", "行政区划代码", "名单类型", "来源", "转移地点"]]
    rows += [[public(i)[3:], f"村民{i}", VA, "危险区群众", "村委会摸排", "辰龙关村部"] for i in range(1, 21)]
    rows += [[public(i)[3:], f"游客{i}", GA, "游客", "景区登记", ""] for i in range(21, 26)]
    rows += [[public(i)[3:], f"订阅{i}", VB, "扫码订阅", "扫码订阅", ""] for i in range(31, 46)]
    rows += [[public(1)[3:], "村民1", VB, "扫码订阅", "扫码订阅", ""]]
    rows += [[public(i)[3:], f"外村{i}", VC, "危险区群众", "村委会摸排", ""] for i in range(51, 56)]
    rows += [[ZHANG[3:], "张书记", VA, "危险区群众", "村委会摸排", "辰龙关村部"]]
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
async def county(db_url: str, tmp_path: Path) -> AsyncIterator[County_]:
    c = await build_county(db_url, tmp_path, per_day=1, qps=20, undeliverable=(BAD,))
    try:
        yield c
    finally:
        await stop_county(c)


async def test_a_red_imminent_warning_reaches_every_listed_resident_once_within_budget(
        county: County_, tmp_path: Path) -> None:
    c = county
    listing = write_list(tmp_path / "官庄镇公众名单.csv")
    assert (await import_list(c.engine.db, listing, now=c.clock.now())).added == 47
    # 回复TD退订 through the real uplink, then the list is re-imported: the opt-out stays.
    await c.reply(OPTED, "TD")
    again = await import_list(c.engine.db, listing, now=c.clock.now())
    assert again.unchanged == 47
    async with c.engine.db.read() as s:
        out = await s.get(PublicOptOut, OPTED)
        assert out is not None and out.opted_out and out.channel == "sms_reply" and out.at == c.clock.now()

    with capture_logs() as logs:
        alert_id = await c.post_cap("PUB-1", [T1])
        # Officials are texted at once; the public fan-out (paced at 20/s) is still under way.
        await asyncio.wait_for(c.engine.outbox.wait_recorded(4), 30)
        assert c.engine.public_outbox is not None and c.engine.public_outbox.recorded < 39
        await c.settled(alert_id)

    msgs = list(c.sms.messages)
    to = Counter(m.to for m in msgs)
    public_msgs = [m for m in msgs if m.to.startswith("+86137")]
    assert len(public_msgs) == 39 and all(n == 1 for p, n in to.items() if p.startswith("+86137"))
    reached = {m.to for m in public_msgs}
    assert reached == ({public(i) for i in range(1, 26)} | {public(i) for i in range(31, 46)}) - {OPTED}
    assert to[ZHANG] == 1 and "回复1" in next(m.body for m in msgs if m.to == ZHANG)  # his 叫应 only
    for m in public_msgs:
        assert "回复" not in m.body and "红色临灾预警" in m.body and "请立即撤离危险区" in m.body
    assert "请立即转移至辰龙关村部" in next(m.body for m in public_msgs if m.to == public(5))
    assert "转移至" not in next(m.body for m in public_msgs if m.to == public(31))

    body = await c.alert(alert_id)
    p = body["public"]
    assert (p["targeted"], p["accepted"], p["delivered"], p["failed"], p["opted_out"], p["over_budget"]) == \
        (40, 39, 38, 1, 1, 1)
    assert p["coverage"] == 0.95 and p["meets_target"] is True and p["rule"] == "imminent"
    assert list(p["failed_by_reason"].values()) == [1]
    villages = {v["name"]: v for v in p["villages"]}
    assert set(villages) == {"辰龙关村", "界亭驿村"}
    assert (villages["辰龙关村"]["targeted"], villages["辰龙关村"]["delivered"], villages["辰龙关村"]["coverage"]) == \
        (25, 23, 0.92)
    assert (villages["界亭驿村"]["targeted"], villages["界亭驿村"]["coverage"]) == (15, 1.0)
    # The audit report counts the same from the event log: 1 期, 39 sent, 38 人次 (one reported
    # undelivered), coverage 38/40 overall and 23/25 in 辰龙关村; officials' 人次 exclude the public.
    report = await make_report(c.engine.db, Scope(alert_id=alert_id), now=c.clock.now())
    issues = report.table("public_issues").rows
    assert [(r["step"], r["issues"], r["targeted"], r["sent"], r["person_times"], r["delivered"], r["undelivered"],
             r["opted_out"], r["over_budget"], r["coverage"], r["coverage_met"]) for r in issues] == [
        ("临灾预警(1h)", 1, 40, 39, 38, 38, 1, 1, 1, 0.95, True), ("合计", 1, 40, 39, 38, 38, 1, 1, 1, 0.95, True)]
    by_village = {r["village"]: (r["targeted"], r["delivered"], r["coverage"]) for r in
                  report.table("public_villages").rows}
    assert by_village == {"辰龙关村": (25, 23, 0.92), "界亭驿村": (15, 15, 1.0)}
    summary = {r["key"]: r["real"] for r in report.table("summary").rows}
    assert (summary["public_issues"], summary["public_person_times"], summary["public_coverage"]) == (1, 38, 0.95)
    assert summary["person_times"] == sum(1 for m in msgs if "请回复1" in m.body) == 4
    # No public message opened a call, and every decision is a recorded target.
    async with c.engine.db.read() as s:
        decisions = Counter((await s.exec(select(PublicTarget.decision).where(PublicTarget.alert_id == alert_id))).all())
        planned = (await s.exec(select(Event.data).where(Event.kind == "public_planned"))).one()
    assert decisions == {"send": 39, "opted_out": 1, "over_budget": 1}
    assert planned["targets"] == 41
    # Residents' numbers appear in no log line, whoever wrote it (the opt-out's is masked).
    assert any(e["event"] == "public fan-out planned" and e["targets"] == 41 for e in logs)
    for entry in logs:
        text = repr(entry)
        assert not any(public(i) in text or public(i)[3:] in text for i in range(1, 56)), entry


async def test_numbers_are_masked_except_for_roles_that_may_see_them(county: County_, tmp_path: Path) -> None:
    c = county
    await import_list(c.engine.db, write_list(tmp_path / "list.csv"), now=c.clock.now())
    officer, approver, auditor = [await c.as_role(r) for r in ("duty_officer", "approver", "auditor")]
    for who in (officer, auditor):
        r = await c.http.get(f"/api/v1/public/recipients?village={VA}&full=1", headers=who)
        body = await r.json()
        assert r.status == 200 and body["masked"] is True and body["total"] == 26
        assert {x["phone"] for x in body["recipients"]} >= {"137****0001", "139****0001"}
        assert "13700000001" not in await r.text()
        assert (await c.http.get("/api/v1/public/recipients.csv", headers=who)).status == 403
    r = await c.http.get(f"/api/v1/public/recipients?village={VA}&full=1", headers=approver)
    assert (await r.json())["masked"] is False and "+8613700000001" in await r.text()
    r = await c.http.get("/api/v1/public/recipients.csv", headers=approver)
    assert r.status == 200 and "13700000055" in await r.text()
    # Unsubscribe and subscribe by API: recorded with the time, the channel and the user.
    r = await c.http.post("/api/v1/public/unsubscribe", json={"phone": "137 0000 0031"}, headers=officer)
    assert r.status == 200 and (await r.json())["phone"] == "137****0031"
    r = await c.http.post("/api/v1/public/subscriptions", json={"phone": "13700000031", "region_code": VB},
                          headers=officer)
    assert r.status == 200 and (await r.json())["opted_in_again"] is True
    r = await c.http.post("/api/v1/public/subscriptions", json={"phone": "0745-2345678", "region_code": VB},
                          headers=officer)
    assert r.status == 400 and (await r.json())["field"] == "phone"
    r = await c.http.post("/api/v1/public/subscriptions", json={"phone": "13700000099", "region_code": "43"},
                          headers=officer)
    assert r.status == 400 and (await r.json())["field"] == "region_code"
    async with c.engine.db.read() as s:
        kinds = [(e.kind, e.data.get("actor"), e.data.get("phone")) for e in (await s.exec(select(Event).where(
            Event.kind.in_(["public_opted_out", "public_opted_in"])).order_by(Event.id))).all()]  # type: ignore[attr-defined]
    assert kinds == [("public_opted_out", "u-duty_officer", "137****0031"),
                     ("public_opted_in", "u-duty_officer", "137****0031")]


async def test_drills_and_steps_the_policy_leaves_out_do_not_text_the_public(county: County_, tmp_path: Path) -> None:
    c = county
    await import_list(c.engine.db, write_list(tmp_path / "list.csv"), now=c.clock.now())
    drill = await c.post_cap("PUB-D", [T1], status="Exercise")
    yellow_warning = await c.post_cap("PUB-W", [T1], colour="黄色", step="warning")

    async def planned() -> bool:
        async with c.engine.db.read() as s:
            rows = (await s.exec(select(PublicCampaign.state).where(
                PublicCampaign.alert_id.in_([drill, yellow_warning])))).all()  # type: ignore[attr-defined]
        return list(rows) == ["skipped", "skipped"]

    from support.speaker_support import eventually

    await eventually(planned, 30, what="both campaigns skipped")
    assert await c.public_rows(drill) == [] and await c.public_rows(yellow_warning) == []
    assert (await c.alert(drill))["public"]["targeted"] == 0


async def test_a_crash_in_the_middle_of_a_fan_out_resumes_without_sending_anyone_twice(
        db_url: str, tmp_path: Path) -> None:
    c = await build_county(db_url, tmp_path, plan_chunk=10, start=False)
    try:
        await import_list(c.engine.db, write_list(tmp_path / "list.csv"), now=c.clock.now())
        res = await c.engine.ingestor.submit_cap(_cap(c), source="test")
        alert_id = res.alert_id
        assert alert_id is not None and c.engine.public is not None and c.engine.public_outbox is not None
        e = c.engine
        # Officials' messages go first: planning waits while they are due and not yet taken.
        assert await e.public.step() is False
        async with e.db.read() as s:
            assert await s.get(PublicCampaign, alert_id) is None
        while await e.outbox.pass_once():
            pass
        officials = len(c.sms.messages)
        crashing = PublicFanout(e.db, e.clock, e.policy, e.templates, e.settings.public, e.channels,
                                fail_after_chunks=2)
        with pytest.raises(RuntimeError):
            assert await crashing.step()
        async with e.db.read() as s:
            assert (await s.exec(select(func.count()).select_from(PublicTarget))).one() == 20
            assert (await s.get(PublicCampaign, alert_id)).state == "planning"  # type: ignore[union-attr]
        # After the restart the module finds the campaign unfinished and plans the rest.
        assert await e.public.step() is True and await e.public.step() is False
        # The sender crashes while the provider holds its answer to an accepted batch.
        c.sms.hold_next_sends(True)
        first = asyncio.create_task(e.public_outbox.pass_once())
        await _until_held(c)
        first.cancel()
        await c.sms.release_held()
        await asyncio.gather(first, return_exceptions=True)
        restarted = type(e.public_outbox)(e.db, e.clock, e.public_outbox.channels, e.public_outbox.cfg,
                                          single_instance=True, purposes=e.public_outbox.purposes)
        await restarted.start()  # looks the in-doubt batch up with the provider: found, recorded sent
        while await restarted.pass_once():
            pass
        async with e.db.read() as s:
            rows = (await s.exec(select(Delivery.to_address, Delivery.state).where(
                Delivery.purpose == "public"))).all()
        assert len(rows) == 41 and {st for _, st in rows} <= {"sent", "delivered"}
        sent = Counter(m.to for m in c.sms.messages[officials:])  # after the officials' messages
        assert len(sent) == 41 and set(sent.values()) == {1} and len(c.sms.messages) == officials + 41
    finally:
        await stop_county(c)


async def test_two_instances_plan_one_warnings_public_fan_out_once(pg_url: str, tmp_path: Path) -> None:
    """Two instances find the same unplanned warning at the same moment: one plans it, the
    other moves on — no failed pass, every resident targeted and texted once."""
    c = await build_county(pg_url, tmp_path, start=False)
    try:
        e, alert_id = c.engine, await _officials_warned(c, tmp_path)
        a, b = (PublicFanout(e.db, e.clock, e.policy, e.templates, e.settings.public, e.channels) for _ in "ab")
        results = await asyncio.gather(a.step(), b.step(), return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        async with e.db.read() as s:
            campaign = await s.get(PublicCampaign, alert_id)
            targets = (await s.exec(select(PublicTarget.phone).where(PublicTarget.alert_id == alert_id))).all()
            planned = (await s.exec(select(func.count()).select_from(Event).where(
                Event.kind == "public_planned"))).one()
            rows = (await s.exec(select(Delivery.to_address).where(Delivery.purpose == "public"))).all()
        assert campaign is not None and campaign.state == "planned" and planned == 1
        assert len(targets) == len(set(targets)) == 41 and len(rows) == len(set(rows)) == 41
    finally:
        await stop_county(c)


async def test_the_public_outbox_is_woken_as_each_chunk_is_planned(db_url: str, tmp_path: Path) -> None:
    """A county's 100,000 residents take seconds to plan: their texts start going out with the
    first planned chunk, not after the last one."""
    c = await build_county(db_url, tmp_path, plan_chunk=10, start=False)
    try:
        e, alert_id = c.engine, await _officials_warned(c, tmp_path)
        planned_rows: list[int] = []
        fan = PublicFanout(e.db, e.clock, e.policy, e.templates, e.settings.public, e.channels,
                           on_change=lambda: planned_rows.append(len(planned_rows)))
        async with e.db.read() as s:
            alert = await s.get(Alert, alert_id)
        assert alert is not None
        await fan.plan(alert)
        assert len(planned_rows) == 5  # 41 targets, 10 a chunk: a wake per chunk
    finally:
        await stop_county(c)


async def _officials_warned(c: County_, tmp: Path) -> int | None:
    """The list imported, the red imminent warning accepted and its officials' SMS sent (public
    planning waits for those): the warning's id."""
    await import_list(c.engine.db, write_list(tmp / "list.csv"), now=c.clock.now())
    alert_id = (await c.engine.ingestor.submit_cap(_cap(c), source="test")).alert_id
    while await c.engine.outbox.pass_once():
        pass
    return alert_id


def _cap(c: County_) -> bytes:
    from datetime import timedelta

    from devtools.demo.capgen import cap_xml

    return cap_xml("PUB-CRASH", c.clock.now(), c.clock.now() + timedelta(hours=1), "红色", "1小时内将出现特大暴雨",
                   "请立即撤离危险区。", [T1], step="imminent")


async def _until_held(c: County_) -> None:
    from support.speaker_support import eventually

    async def held() -> bool:
        return c.sms.held >= 1

    await eventually(held, 30, what="a held SendSms request")
