"""A storm whose audit numbers are known by construction, driven through the real engine.

CAP over the HTTP API, SMS through the Tencent Cloud SDK to the Tencent simulator (delivery
reports and replies posted back to our webhooks), WeCom cards and their 收到 button through
the WeCom simulator, the confirm link's 反馈 form, a duty officer's phoned confirmation, and
village loudspeakers as real MQTT clients on the local Mosquitto. Time is a ManualClock, so
every time to confirm is exact. The expected numbers are worked out in tests/integration/
test_audit_report.py next to the assertions.

The county: 官庄镇 (辰龙关村 with 一组, 界亭驿村) and 马底驿镇 (沿溪村, 麻溪铺村 with nobody on the
roster, 溪口村 outside the warning). Real warning A: imminent, yellow, four villages. Drill D:
warning step, 30 minutes later, 辰龙关村's township.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import func, select

from channels.speaker_mqtt import MqttSettings
from channels.wecom import CALLBACK_PATH
from devtools.demo.capgen import cap_xml
from devtools.simulators.speakers import SimConfig, SpeakerFleet
from devtools.simulators.tencent_sms_api import TencentSmsApi
from devtools.simulators.wecom_api import WeComApi
from support.channel_stack import LINK_RE, free_port, write_policy
from support.speaker_support import MAIN_BROKER, eventually, tag
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import (
    ApiCfg,
    County,
    DatabaseCfg,
    DeliveryCfg,
    PolicyCfg,
    ServerCfg,
    Settings,
    SmsCfg,
    SpeakersCfg,
    TencentCfg,
    WeComCfg,
)
from warnd.db.models import Call, Event, Person, Region, Speaker

TOKEN = "audit-token-0123456789"
CB = "audit-callback-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
AUTH = {"Authorization": f"Bearer {TOKEN}"}

COUNTY, T1, T2 = "431222", "431222100", "431222101"
VA, GA, VB = "431222100200", "431222100200001", "431222100201"
VC, VD, VE = "431222101200", "431222101201", "431222101202"


def square(lon: float, lat: float, d: float = 0.02) -> str:
    return f"POLYGON(({lon} {lat}, {lon + d} {lat}, {lon + d} {lat + d}, {lon} {lat + d}, {lon} {lat}))"


REGIONS = [
    Region(code=COUNTY, name="沅陵县", level="county"),
    Region(code=T1, name="官庄镇", level="township", parent_code=COUNTY),
    Region(code=T2, name="马底驿镇", level="township", parent_code=COUNTY),
    Region(code=VA, name="辰龙关村", level="village", parent_code=T1, geometry_wkt=square(110.40, 28.40)),
    Region(code=GA, name="辰龙关村一组", level="group", parent_code=VA),
    Region(code=VB, name="界亭驿村", level="village", parent_code=T1, geometry_wkt=square(110.42, 28.40)),
    Region(code=VC, name="沿溪村", level="village", parent_code=T2, geometry_wkt=square(110.40, 28.42)),
    Region(code=VD, name="溪口村", level="village", parent_code=T2, geometry_wkt=square(110.42, 28.42)),
    Region(code=VE, name="麻溪铺村", level="village", parent_code=T2, geometry_wkt="POINT(110.45 28.45)"),
]


def _p(n: int, name: str, role: str, region: str, deputy: int | None = None, wecom: str | None = None) -> Person:
    phone = f"+86139000000{n:02d}"
    return Person(key=phone, name=name, phone=phone, role=role, region_code=region, wecom_userid=wecom,
                  deputy_key=f"+86139000000{deputy:02d}" if deputy else None, updated_at=T0)


PEOPLE = [
    _p(1, "张书记", "village_secretary", VA, wecom="zhangsj"),
    _p(2, "李主任", "village_head", VA),
    _p(3, "王网格", "grid_worker", VA, deputy=2),
    _p(4, "赵组长", "group_leader", GA),
    _p(11, "陈书记", "village_secretary", VB, wecom="chensj"),
    _p(12, "周主任", "village_head", VB),
    _p(13, "吴网格", "grid_worker", VB, deputy=12),
    _p(21, "孙书记", "village_secretary", VC),
    _p(23, "冯网格", "grid_worker", VC, deputy=21),
    _p(31, "刘镇长", "township_head", T1),
    _p(99, "值班员", "duty_officer", COUNTY),
]
PHONE = {p.name: p.phone for p in PEOPLE}
UNDELIVERABLE = PHONE["陈书记"]  # the carrier reports his SMS undelivered; his WeCom card arrives


@dataclass
class Storm:
    engine: App
    clock: ManualClock
    sms: TencentSmsApi
    wecom: WeComApi
    http: TestClient
    base: str
    speakers: dict[str, str]  # short name → device id
    fleets: list[SpeakerFleet] = field(default_factory=list)
    real: int = 0  # alert id of warning A
    drill: int = 0  # alert id of drill D

    @property
    def reply_url(self) -> str:
        return f"{self.base}/webhooks/tencent/sms/{CB}/reply"

    @property
    def status_url(self) -> str:
        return f"{self.base}/webhooks/tencent/sms/{CB}/status"

    async def reply(self, name: str, text: str = "1") -> None:
        # The handset's own clock is the storm's: two replies in one real second are not a retry.
        code, body = await self.sms.send_reply(self.reply_url, PHONE[name], text,
                                               time_=int(self.clock.now().timestamp()))
        assert code == 200, body

    async def at(self, minutes: float) -> None:
        """Move the clock to T0 + minutes (forward only)."""
        delta = T0 + timedelta(minutes=minutes) - self.clock.now()
        assert delta >= timedelta(0)
        await self.clock.advance(delta)

    async def count(self, kind: str, **where: Any) -> int:
        async with self.engine.db.read() as s:
            q = select(func.count()).select_from(Event).where(Event.kind == kind)
            for k, v in where.items():
                q = q.where(getattr(Event, k) == v)
            return int((await s.exec(q)).one())

    async def recorded(self, n: int) -> None:
        """Until the outbox has recorded n sends (a provider may answer before the record)."""
        await asyncio.wait_for(self.engine.outbox.wait_recorded(n), 30)


async def build_storm(db_url: str, tmp: Path) -> Storm:
    clock = ManualClock(T0)
    sms, wecom = TencentSmsApi(undeliverable_numbers=[UNDELIVERABLE]), WeComApi()
    for sim in (sms, wecom):
        await sim.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t = tag()  # retained MQTT states of other runs must not leak in
    speakers = {name: f"AUD{t}-{name}" for name in ("A1", "A2", "B1", "C1", "E1")}
    settings = Settings(
        county=County(code=COUNTY), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        server=ServerCfg(port=port, public_base_url=base),
        policy=PolicyCfg(path=str(write_policy(tmp, '["sms", "wecom"]'))),
        delivery=DeliveryCfg(recipient_min_interval_seconds=0),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sms.secret_id, secret_key=sms.secret_key, sdk_app_id=sms.sdk_app_id,
            sign_name=sms.sign_name, template_id="100001", endpoint=sms.base_url.split("://", 1)[1],
            callback_token=CB)),
        wecom=WeComCfg(enabled=True, corp_id=wecom.corp_id, corp_secret=wecom.corp_secret,
                       agent_id=wecom.agent_id, token=wecom.token, encoding_aes_key=wecom.encoding_aes_key,
                       api_base_url=wecom.base_url),
        speakers=SpeakersCfg(enabled=True, host=MAIN_BROKER[0], port=MAIN_BROKER[1], client_id=f"warnd-audit-{t}",
                             ack_window_seconds=3600, stale_after_seconds=3600, reconnect_min_seconds=0.2,
                             reconnect_max_seconds=1.0, fallback_roles=("village_head", "village_secretary")),
    )
    engine = App.build(settings, clock=clock)
    async with engine.db.session() as s, s.begin():
        s.add_all([Region(**r.model_dump()) for r in REGIONS])
        s.add_all([Person(**p.model_dump(exclude={"id"})) for p in PEOPLE])
        s.add_all([Speaker(device_id=d, region_code={"A": VA, "B": VB, "C": VC, "E": VE}[name[0]],
                           capabilities=["tts"], updated_at=T0) for name, d in speakers.items()])
    await engine.start()
    assert engine.speakers is not None
    await asyncio.wait_for(engine.speakers.channel.connected.wait(), 10)
    http = TestClient(TestServer(make_app(engine), port=port))
    await http.start_server()
    storm = Storm(engine, clock, sms, wecom, http, base, speakers)
    mqtt = MqttSettings(host=MAIN_BROKER[0], port=MAIN_BROKER[1])
    # A1, A2 play; B1's amplifier fails; C1 and E1 never come online (dark).
    for names, cfg in ((["A1", "A2"], SimConfig()), (["B1"], SimConfig(failure_rate=1.0))):
        fleet = SpeakerFleet([speakers[n] for n in names], mqtt, cfg, clock=clock)
        storm.fleets.append(fleet)
        await fleet.start()

    async def online() -> bool:
        async with engine.db.read() as s:
            n = (await s.exec(select(func.count()).select_from(Speaker).where(Speaker.online == True))).one()  # noqa: E712
        return int(n) == 3

    await eventually(online, what="three speakers online")
    return storm


async def stop_storm(storm: Storm) -> None:
    for f in storm.fleets:
        await asyncio.wait_for(f.stop(), 30)
    await storm.http.close()
    await asyncio.wait_for(storm.engine.stop(), 30)
    await storm.sms.stop()
    await storm.wecom.stop()


async def _post_cap(storm: Storm, body: bytes) -> int:
    r = await storm.http.post("/api/v1/alerts", data=body, headers=AUTH)
    assert r.status == 201, await r.text()
    return int((await r.json())["id"])


async def _calls_of(storm: Storm, alert_id: int) -> dict[str, int]:
    async with storm.engine.db.read() as s:
        rows = (await s.exec(select(Person.name, Call.id).join(Call, Call.person_id == Person.id).where(  # type: ignore[arg-type]
            Call.alert_id == alert_id))).all()
    return {name: cid for name, cid in rows if cid is not None}


async def play_storm(storm: Storm) -> Storm:
    """The storm, minute by minute (T0 = 10:00 Beijing time)."""
    s = storm
    # 10:00 warning A: 9 officials by SMS, 张书记 and 陈书记 also by WeCom; the loudspeakers play.
    s.real = await _post_cap(s, cap_xml("AUD-A", T0, T0 + timedelta(hours=1), "黄色", "1小时内将出现暴雨",
                                        "请组织转移。", [VA, VB, VC, VE], step="imminent"))
    await s.wecom.wait_for_messages(2, timeout=30)

    async def speakers_settled() -> bool:  # A1, A2 played, B1 failed; fallback calls for B1 and C1
        return (await s.count("speaker_played") == 2 and await s.count("speaker_failed") == 1
                and await s.count("speaker_fallback") == 2)

    await eventually(speakers_settled, what="speakers played/failed and fallbacks opened")
    # 9 warnings, 2 fallback texts (周主任 for B1, 孙书记 for C1), 1 gap notice to the duty room.
    msgs = await s.sms.wait_for_messages(12, timeout=30)
    warnings = [m for m in msgs if "请回复1" in m.body and "喇叭" not in m.body]
    assert len(warnings) == 9 and len(msgs) == 12, [m.body for m in msgs]
    await s.recorded(14)  # and the two WeCom cards
    code, _ = await s.sms.send_status_reports(s.status_url, warnings)  # 陈书记's: undelivered
    assert code == 200
    # 10:02 张书记 replies; 10:03 陈书记 taps 收到 on the WeCom card and opens its link.
    await s.at(2)
    await s.reply("张书记")
    await s.at(3)
    card = next(m for m in s.wecom.messages if m.to == "chensj")
    cb = await s.wecom.press_button(card, s.base + CALLBACK_PATH)
    assert cb.status == 200 and "已确认" in cb.reply
    token = LINK_RE.match(card.extra["card"]["button_list"][1]["url"]).group(1)  # type: ignore[union-attr]
    page = await s.http.post(f"/c/{token}")
    ftoken = re.search(r'action="\.\./f/([A-Za-z0-9_-]+)"', await page.text())
    assert page.status == 200 and ftoken is not None
    # 10:04 李主任; 10:06 孙书记 (his warning call and his loudspeaker-fallback call).
    await s.at(4)
    await s.reply("李主任")
    await s.at(6)
    await s.reply("孙书记")
    # 10:08 the duty officer phones 赵组长 and records it; 10:09 陈书记's 反馈: 12 people moved.
    await s.at(8)
    calls = await _calls_of(s, s.real)
    officer = bearer(await token_for(s.engine.db, "wangzb", "duty_officer"))  # people act under their own name
    r = await s.http.post(f"/api/v1/calls/{calls['赵组长']}/ack", json={"note": "电话联系，已收到"}, headers=officer)
    assert r.status == 200 and (await r.json())["confirmed"] is True
    await s.at(9)
    r = await s.http.post(f"/f/{ftoken.group(1)}", data={"action": "transferred", "people_moved": "12"})
    assert r.status == 200, await r.text()
    # 10:10 the window closes: resend to 王网格, 周主任, 吴网格, 冯网格 and 周主任's fallback call.
    await s.at(10 + 1 / 60)
    await s.sms.wait_for_messages(12 + 5, timeout=30)
    await s.recorded(19)
    # 10:12 周主任 replies: his warning call and his fallback call, both at rung 1.
    await s.at(12)
    await s.reply("周主任")
    # 10:15 deputies: 李主任 for 王网格, 周主任 for 吴网格, 孙书记 for 冯网格.
    await s.at(15 + 2 / 60)
    await s.sms.wait_for_messages(17 + 3, timeout=30)
    await s.recorded(22)
    # 10:16 李主任 answers for 王网格.
    await s.at(16)
    await s.reply("李主任")
    # 10:20 superiors: 陈书记 (SMS and WeCom) for 吴网格, 孙书记 for 冯网格; 10:25 the duty room.
    await s.at(20 + 3 / 60)
    await s.sms.wait_for_messages(20 + 2, timeout=30)
    await s.wecom.wait_for_messages(3, timeout=30)
    await s.recorded(25)
    await s.at(25 + 4 / 60)

    async def in_duty_room() -> bool:
        return await s.count("call_to_duty_room", alert_id=s.real) == 2

    await eventually(in_duty_room, what="two calls handed to the duty room")
    # 10:30 drill D (Exercise), warning step: 官庄镇's 刘镇长; he answers at 10:31.
    await s.at(30)
    s.drill = await _post_cap(s, cap_xml("AUD-D", T0 + timedelta(minutes=30), T0 + timedelta(hours=3), "黄色",
                                         "3小时内将出现暴雨（演练）", "请做好转移准备。", [VA], step="warning",
                                         status="Exercise"))
    await s.sms.wait_for_messages(22 + 2, timeout=30)  # 刘镇长 and the gap notice (no 乡镇值班人员)
    await s.recorded(27)
    await s.at(31)
    await s.reply("刘镇长")

    async def drill_confirmed() -> bool:
        return await s.count("call_confirmed", alert_id=s.drill) == 1

    await eventually(drill_confirmed, what="the drill confirmed")
    return s
