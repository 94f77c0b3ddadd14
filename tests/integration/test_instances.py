"""Several instances on one PostgreSQL database: every transition happens exactly once.

Two `App`s built from the same settings (as two `warnd serve` processes would be), each with
its own Runner, share one database, one manual clock and one Tencent simulator. Whatever
falls due is seen by both at the same instant; each rung must fire once, each message go
out once, and neither instance's pass may fail because of the other's work.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from devtools.demo.capgen import cap_xml
from devtools.simulators.tencent_sms_api import TencentSmsApi
from support.phones import CB, T0, TOKEN, person
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import ApiCfg, County, DatabaseCfg, Settings, SmsCfg, TencentCfg
from warnd.db.models import Call, Delivery, Event, Person, Region

pytestmark = pytest.mark.postgres

TOWNSHIP = "431222100"
VILLAGES = [f"{TOWNSHIP}{i:03d}" for i in range(200, 240)]  # 40 villages, 3 officials each


def roster() -> tuple[list[Region], list[Person]]:
    regions = [Region(code="431222", name="沅陵县", level="county"),
               Region(code=TOWNSHIP, name="官庄镇", level="township", parent_code="431222")]
    people = [person("+8613900000005", "刘镇长", "township_head", TOWNSHIP),
              person("+8613900000009", "值班员", "duty_officer", "431222")]
    for i, code in enumerate(VILLAGES):
        regions.append(Region(code=code, name=f"第{i}村", level="village", parent_code=TOWNSHIP))
        sec, head, grid = (f"+86139{i:03d}{k:05d}" for k in (1, 2, 3))
        people += [person(sec, f"书记{i}", "village_secretary", code, head),
                   person(head, f"主任{i}", "village_head", code, sec),
                   person(grid, f"网格{i}", "grid_worker", code, head)]
    return regions, people


@dataclass
class Cluster:
    apps: list[App]
    clock: ManualClock
    sim: TencentSmsApi
    http: list[TestClient]

    async def settle(self) -> None:
        """Until every instance has done everything due. Work one instance writes does not
        wake the other, so kick all and settle all until a round changes nothing."""
        while True:
            before = (len(self.sim.messages), [sum(st.steps for st in a.runner.stats.values()) for a in self.apps])
            for a in self.apps:
                a.kick()
            await asyncio.gather(*(a.runner.settle() for a in self.apps))
            after = (len(self.sim.messages), [sum(st.steps for st in a.runner.stats.values()) for a in self.apps])
            if after == before:
                return

    async def fast_forward(self, **kw: float) -> None:
        await self.settle()
        await self.clock.advance(timedelta(**kw))
        await self.settle()


@asynccontextmanager
async def cluster(db_url: str, n: int = 2) -> AsyncIterator[Cluster]:
    clock = ManualClock(T0)
    sim = TencentSmsApi()
    await sim.start()
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://", 1)[1],
            callback_token=CB)),
    )
    apps = [App.build(settings, clock=clock) for _ in range(n)]
    regions, people = roster()
    async with apps[0].db.session() as s, s.begin():
        s.add_all(regions)
        s.add_all(people)
    http: list[TestClient] = []
    try:
        for a in apps:
            await a.start()
            client = TestClient(TestServer(make_app(a)))
            await client.start_server()
            http.append(client)
        yield Cluster(apps, clock, sim, http)
    finally:
        for client in http:
            await client.close()
        for a in apps:
            await a.stop()
        await sim.stop()


def warning() -> bytes:
    return cap_xml("RS-1", T0, T0 + timedelta(hours=1), "黄色", "1小时内将出现暴雨", "请组织转移。", VILLAGES,
                   step="imminent")


async def test_two_instances_fire_each_rung_once_and_send_each_message_once(pg_url: str) -> None:
    async with cluster(pg_url) as c:
        # The warning comes in through the second instance's API.
        r = await c.http[1].post("/api/v1/alerts", data=warning(), headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 201, await r.text()
        alert_id = (await r.json())["id"]
        await c.settle()
        officials = 3 * len(VILLAGES)
        assert len(c.sim.messages) == officials

        # Nobody answers: every rung of every call falls due at the same instant on both.
        for minutes in (10, 5, 5, 5):
            await c.fast_forward(minutes=minutes, seconds=1)

        async with c.apps[0].db.read() as s:
            calls = (await s.exec(select(Call).where(Call.alert_id == alert_id))).all()
            rungs = (await s.exec(select(Event.call_id, Event.data).where(
                col(Event.kind).in_(["call_escalated", "call_to_duty_room"])))).all()
            sent = (await s.exec(select(Delivery.person_id, Delivery.call_id, Delivery.rung).where(
                Delivery.alert_id == alert_id))).all()

        assert len(calls) == officials
        assert all(call.state == "duty_room" for call in calls), Counter(call.state for call in calls)
        fired = Counter((cid, data["level"]) for cid, data in rungs)
        twice = {k: n for k, n in fired.items() if n > 1}
        assert not twice, f"rungs recorded more than once: {twice}"
        assert len(fired) == 4 * officials  # resend, deputy, superior, duty room
        # One message per rung per recipient, and the provider accepted each once.
        assert len(sent) == len(set(sent))
        per_text = Counter((m.to, m.body) for m in c.sim.messages)
        assert max(per_text.values()) == 1, [k for k, n in per_text.items() if n > 1][:5]
        assert len(c.sim.messages) == len(sent)
        # Neither instance's pass failed (rolled back) because of the other's work.
        for a in c.apps:
            assert {name: st.errors for name, st in a.runner.stats.items() if st.errors} == {}


async def test_a_call_locked_by_another_instance_is_skipped_not_waited_for(pg_url: str) -> None:
    """Instance A is in the middle of moving one call (its transaction holds the row): B's
    escalation pass fires every other due rung at once and leaves that one to A, instead of
    blocking on the lock (or deadlocking with A's own pass)."""
    async with cluster(pg_url) as c:
        r = await c.http[0].post("/api/v1/alerts", data=warning(), headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 201, await r.text()
        await c.settle()
        async with c.apps[0].db.read() as s:
            first = (await s.exec(select(Call.id).order_by(col(Call.id)).limit(1))).one()
        calls = 3 * len(VILLAGES)
        async with c.apps[0].db.session() as held, held.begin():
            await held.exec(select(Call).where(Call.id == first).with_for_update())
            await c.clock.advance(timedelta(minutes=10, seconds=1))
            # Both instances' passes fire every other rung while the row is held.
            await c.sim.wait_until(lambda: len(c.sim.messages) == 2 * calls - 1, timeout=20)
            async with c.apps[1].db.read() as s:
                levels = Counter((await s.exec(select(Call.level))).all())
            assert levels == {1: calls - 1, 0: 1}
        await c.settle()
        async with c.apps[0].db.read() as s:
            levels = Counter((await s.exec(select(Call.level))).all())
            rungs = Counter((await s.exec(select(Event.call_id).where(Event.kind == "call_escalated"))).all())
        assert levels == {1: calls}  # the held one fired once its holder let go
        assert set(rungs.values()) == {1} and len(rungs) == calls
        assert len(c.sim.messages) == 2 * calls
        for a in c.apps:
            assert {name: st.errors for name, st in a.runner.stats.items() if st.errors} == {}
