"""A county you can talk to like a phone: the real engine over HTTP, the Tencent Cloud SMS
SDK against the local Tencent simulator, officials' handsets as phones that expect texts and
reply, and a manual clock you fast-forward.

    async with county(db_url) as c:
        alert = await c.warn(imminent())
        await c.phone("+8613900000001").expect_sms("临灾")
        await c.phone("+8613900000001").reply("1")
        await c.fast_forward(minutes=10)
        await c.phone("+8613900000002").expect_sms("再次提醒")

Waiting is event-driven: a phone waits on the simulator's record of accepted messages, and
fast_forward waits until every engine module has done what became due (Runner.settle).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from channels.base import Channel
from devtools.demo.capgen import cap_xml
from devtools.simulators import SimMessage
from devtools.simulators.tencent_sms_api import TencentSmsApi
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App, build_channels
from warnd.clock import ManualClock
from warnd.config import ApiCfg, County, DatabaseCfg, DeliveryCfg, Settings, SmsCfg, TencentCfg
from warnd.db.models import Person, Region

TOKEN = "test-token-0123456789"
CB = "callback-secret-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
VILLAGE = "431222100200"


def person(key: str, name: str, role: str, region: str, deputy: str | None = None) -> Person:
    return Person(key=key, name=name, phone=key, role=role, region_code=region, deputy_key=deputy, updated_at=T0)


REGIONS = [
    Region(code="431222", name="沅陵县", level="county"),
    Region(code="431222100", name="官庄镇", level="township", parent_code="431222"),
    Region(code=VILLAGE, name="辰龙关村", level="village", parent_code="431222100"),
    Region(code="431222100200001", name="辰龙关村一组", level="group", parent_code=VILLAGE),
]

OFFICIALS = [
    person("+8613900000001", "张书记", "village_secretary", VILLAGE, "+8613900000002"),
    person("+8613900000002", "李主任", "village_head", VILLAGE, "+8613900000001"),
    person("+8613900000003", "王网格", "grid_worker", VILLAGE, "+8613900000002"),
    person("+8613900000004", "赵组长", "group_leader", "431222100200001"),
    person("+8613900000005", "刘镇长", "township_head", "431222100"),
    person("+8613900000009", "值班员", "duty_officer", "431222"),
]


def imminent(identifier: str = "RS-1", **kw: Any) -> bytes:
    """A yellow 1-hour heavy-rain warning over 辰龙关村, sent at T0."""
    return cap_xml(identifier, T0, T0 + timedelta(hours=1), "黄色", "1小时内将出现暴雨", "请组织转移。",
                   [VILLAGE], step="imminent", **kw)


@dataclass
class Phone:
    """One handset. `expect_sms` consumes the messages it matches, in order."""

    county: CountyHarness
    number: str
    seen: int = 0  # how many of this phone's messages have been consumed

    def inbox(self) -> list[SimMessage]:
        return [m for m in self.county.sim.messages if m.to == self.number]

    async def expect_sms(self, containing: str = "", timeout: float = 30.0) -> SimMessage:  # noqa: ASYNC109
        """The next message to this phone (containing `containing`); earlier ones that do not
        contain it are skipped over."""
        found: list[SimMessage] = []

        def arrived() -> bool:
            for i, m in enumerate(self.inbox()[self.seen:], start=self.seen):
                if containing in m.body:
                    found.append(m)
                    self.seen = i + 1
                    return True
            return False

        try:
            await self.county.sim.wait_until(arrived, timeout=timeout)
        except TimeoutError:
            got = [m.body for m in self.inbox()[self.seen:]]
            raise AssertionError(f"{self.number} got no SMS containing {containing!r}; unread: {got}") from None
        return found[0]

    async def expect_no_sms(self) -> None:
        """After the engine has settled, nothing new reached this phone."""
        await self.county.settle()
        unread = [m.body for m in self.inbox()[self.seen:]]
        assert not unread, f"{self.number} got unexpected SMS: {unread}"

    async def reply(self, text: str, **kw: Any) -> int:
        """Reply by SMS: Tencent's uplink callback into our webhook. Returns the HTTP status
        the webhook answered (after the reply was stored)."""
        status, _ = await self.county.sim.send_reply(self.county.reply_url, self.number, text, **kw)
        return status


@dataclass
class CountyHarness:
    app: App
    clock: ManualClock
    sim: TencentSmsApi
    http: TestClient
    reply_url: str
    officer: dict[str, str]  # the duty officer 王值班's personal token (Authorization header)
    phones: dict[str, Phone] = field(default_factory=dict)

    @property
    def machine(self) -> dict[str, str]:
        """The shared config token: machine senders only (no personal data, no human action)."""
        return {"Authorization": f"Bearer {TOKEN}"}

    def phone(self, number: str) -> Phone:
        return self.phones.setdefault(number, Phone(self, number))

    async def warn(self, cap: bytes, expect: int = 201) -> dict[str, Any]:
        """POST a CAP warning through the API, as an automated sender would."""
        r = await self.http.post("/api/v1/alerts", data=cap, headers=self.machine)
        body: dict[str, Any] = await r.json(content_type=None)
        assert r.status == expect, body
        return body

    async def calls(self, alert_id: int) -> dict[str, dict[str, Any]]:
        """The duty room's view of an alert's calls, by official's name."""
        r = await self.http.get(f"/api/v1/alerts/{alert_id}/calls", headers=self.officer)
        assert r.status == 200
        return {c["name"]: c for c in (await r.json())["calls"]}

    async def settle(self) -> None:
        self.app.kick()
        await self.app.runner.settle()

    async def fast_forward(self, *, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        """Move the clock on and wait until the engine has done everything that fell due."""
        await self.settle()
        await self.clock.advance(timedelta(hours=hours, minutes=minutes, seconds=seconds))
        await self.settle()


@asynccontextmanager
async def county(db_url: str, officials: Sequence[Person] = OFFICIALS,
                 regions: Sequence[Region] = REGIONS, *, sms_timeout: float = 15.0,
                 delivery: DeliveryCfg | None = None, extra_channels: Mapping[str, Channel] | None = None,
                 **sim_options: Any) -> AsyncIterator[CountyHarness]:
    """`sms_timeout`: the Tencent SDK's timeout (1 s for tests of answers that come late);
    `extra_channels`: channels beside the ones the settings build (a second SMS provider);
    `sim_options`: TencentSmsApi keyword arguments (log_path, seed, ...)."""
    clock = ManualClock(T0)
    sim = TencentSmsApi(**sim_options)
    await sim.start()
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://", 1)[1],
            callback_token=CB, timeout_seconds=sms_timeout)),
        delivery=delivery or DeliveryCfg(),
    )
    channels = {**build_channels(settings), **extra_channels} if extra_channels else None
    app = App.build(settings, clock=clock, channels=channels)
    async with app.db.session() as s, s.begin():
        s.add_all([Region(**r.model_dump()) for r in regions])
        s.add_all([Person(**p.model_dump()) for p in officials])
    await app.start()
    officer = bearer(await token_for(app.db, "wangzb", "duty_officer"))
    http = TestClient(TestServer(make_app(app)))
    await http.start_server()
    try:
        yield CountyHarness(app, clock, sim, http, str(http.make_url(f"/webhooks/tencent/sms/{CB}/reply")), officer)
    finally:
        await http.close()
        await app.stop()
        await sim.stop()
