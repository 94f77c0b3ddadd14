"""A whole engine (simulated SMS provider, manual clock) with feed sources and stations,
for the feed tests. Two townships, three villages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, func, select

from devtools.simulators.tencent_sms_api import TencentSmsApi
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import ApiCfg, County, DatabaseCfg, FeedsCfg, Settings, SmsCfg, TencentCfg
from warnd.db.models import Alert, Call, Delivery, Event, Person, Region

TOKEN = "test-token-0123456789"
CB = "callback-secret-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
DATA = Path(__file__).resolve().parents[1] / "data"

V1, V2, V3 = "431222100200", "431222100201", "431222101200"  # 辰龙关村, 桃坪村 (官庄镇); 麻溪铺村 (麻溪铺镇)


def person(key: str, name: str, role: str, region: str, deputy: str | None = None) -> Person:
    return Person(key=key, name=name, phone=key, role=role, region_code=region, deputy_key=deputy, updated_at=T0)


ROSTER_REGIONS = [
    Region(code="431222", name="沅陵县", level="county"),
    Region(code="431222100", name="官庄镇", level="township", parent_code="431222"),
    Region(code=V1, name="辰龙关村", level="village", parent_code="431222100"),
    Region(code=V2, name="桃坪村", level="village", parent_code="431222100"),
    Region(code="431222101", name="麻溪铺镇", level="township", parent_code="431222"),
    Region(code=V3, name="麻溪铺村", level="village", parent_code="431222101"),
]


def roster_people() -> list[Person]:
    people = [person("+8613900000009", "值班员", "duty_officer", "431222"),
              person("+8613900000005", "刘镇长", "township_head", "431222100"),
              person("+8613900000006", "官庄值班", "township_duty", "431222100"),
              person("+8613900000007", "麻镇长", "township_head", "431222101"),
              person("+8613900000008", "麻值班", "township_duty", "431222101")]
    for i, (code, tag) in enumerate(((V1, "辰"), (V2, "桃"), (V3, "麻"))):
        base = 10 + i * 10
        people += [person(f"+86139000000{base + 1}", f"{tag}书记", "village_secretary", code),
                   person(f"+86139000000{base + 2}", f"{tag}主任", "village_head", code),
                   person(f"+86139000000{base + 3}", f"{tag}网格", "grid_worker", code)]
    return people


@dataclass
class Stack:
    engine: App
    clock: ManualClock
    sim: TencentSmsApi
    http: TestClient

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def post_cap(self, body: bytes) -> tuple[int, dict[str, Any]]:
        r = await self.http.post("/api/v1/alerts", data=body, headers=self.auth)
        return r.status, await r.json(content_type=None)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.engine.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(model).where(*where))).one())

    async def events(self, kind: str) -> list[Event]:
        async with self.engine.db.session() as s:
            return list((await s.exec(select(Event).where(Event.kind == kind).order_by(col(Event.id)))).all())

    async def alerts(self) -> list[Alert]:
        async with self.engine.db.session() as s:
            return list((await s.exec(select(Alert).order_by(col(Alert.id)))).all())

    async def calls_by_name(self, alert_id: int) -> dict[str, Call]:
        async with self.engine.db.session() as s:
            rows = (await s.exec(select(Call, Person.name).join(Person, col(Person.id) == col(Call.person_id)).where(
                Call.alert_id == alert_id))).all()
        return {name: call for call, name in rows}

    async def deliveries(self, alert_id: int) -> list[Delivery]:
        async with self.engine.db.session() as s:
            return list((await s.exec(select(Delivery).where(Delivery.alert_id == alert_id))).all())


async def seed(engine: App) -> None:
    async with engine.db.session() as s, s.begin():
        s.add_all([Region(**r.model_dump()) for r in ROSTER_REGIONS])
        s.add_all(roster_people())


@asynccontextmanager
async def stack(db_url: str, tmp_path: Path, sources: str = "", stations: str = "",
                seed_roster: bool = True, clock: ManualClock | None = None, sl651: bool = False,
                **sections: Any) -> AsyncIterator[Stack]:
    """`sections`: further settings sections (e.g. ingest=IngestCfg(...))."""
    clock = clock or ManualClock(T0)
    sim = TencentSmsApi()
    await sim.start()
    feeds = FeedsCfg()
    if sources:
        p = tmp_path / "sources.toml"
        p.write_text(sources, encoding="utf-8")
        feeds = FeedsCfg(sources=str(p), stations=feeds.stations)
    if stations:
        p = tmp_path / "stations.toml"
        p.write_text(stations, encoding="utf-8")
        feeds = FeedsCfg(sources=feeds.sources, stations=str(p))
    if sl651:  # the SL 651 station gateway on free local ports (engine.feeds.sl651.tcp_port / udp_port)
        feeds = FeedsCfg(sources=feeds.sources, stations=feeds.stations, sl651_tcp="127.0.0.1:0",
                         sl651_udp="127.0.0.1:0")
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sim.secret_id, secret_key=sim.secret_key, sdk_app_id=sim.sdk_app_id,
            sign_name=sim.sign_name, template_id="100001", endpoint=sim.base_url.split("://", 1)[1],
            callback_token=CB)),
        feeds=feeds, **sections,
    )
    engine = App.build(settings, clock=clock)
    if seed_roster:
        await seed(engine)
    assert engine.feeds is not None
    engine.feeds.polls.enabled = False  # polls are driven by the tests on the manual clock
    await engine.start()
    http = TestClient(TestServer(make_app(engine)))
    await http.start_server()
    try:
        yield Stack(engine, clock, sim, http)
    finally:
        await http.close()
        await engine.stop()
        await sim.stop()


CMA = "431222_QXT@hn.cma.gov.cn"


def _t(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat()


def cap(identifier: str, *, sender: str = CMA, sent: datetime = T0, msg_type: str = "Alert",
        references: list[tuple[str, datetime]] | None = None, event: str = "暴雨黄色预警",
        headline: str = "沅陵县气象台发布暴雨黄色预警信号", geocodes: tuple[str, ...] = (V1,),
        expires: datetime | None = None, onset: datetime | None = None,
        params: tuple[tuple[str, str], ...] = (), event_codes: tuple[tuple[str, str], ...] = (("预警类型", "暴雨"),),
        polygon: str | None = None, severity: str = "Moderate") -> bytes:
    """A CMA-county-style CAP 1.2 document (see tests/data/cap/cma_rainstorm_geocode.xml)."""
    from datetime import timedelta
    from xml.sax.saxutils import escape

    expires = expires or sent + timedelta(hours=24)
    refs = " ".join(f"{sender},{i},{_t(w)}" for i, w in references or [])
    codes = "".join(f"<eventCode><valueName>{n}</valueName><value>{v}</value></eventCode>" for n, v in event_codes)
    ps = "".join(f"<parameter><valueName>{n}</valueName><value>{v}</value></parameter>" for n, v in params)
    geo = "".join(f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in geocodes)
    poly = f"<polygon>{polygon}</polygon>" if polygon else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{sender}</sender>
  <sent>{_t(sent)}</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {f"<references>{refs}</references>" if refs else ""}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>{escape(event)}</event>
    <urgency>Expected</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    {codes}
    <effective>{_t(sent)}</effective>
    {f"<onset>{_t(onset)}</onset>" if onset else ""}
    <expires>{_t(expires)}</expires>
    <senderName>沅陵县气象台</senderName>
    <headline>{escape(headline)}</headline>
    <description>{escape(headline)}，请注意防范。</description>
    <instruction>请做好防范。</instruction>
    {ps}
    <area><areaDesc>沅陵县</areaDesc>{poly}{geo}</area>
  </info>
</alert>""".encode()
