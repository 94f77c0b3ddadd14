"""A county with public lists, on the real engine: HTTP API and webhooks on a fixed local port,
SMS through the Tencent Cloud SDK to the Tencent simulator (delivery reports pushed back to
our webhook, replies posted as the handset's uplink), a manual clock.

The county: 官庄镇 with 辰龙关村 (and its 一组) and 界亭驿村, both under the warning; 马底驿镇's
沿溪村 outside it. Officials: 张书记 and 李主任 (辰龙关村), 陈书记 (界亭驿村), 刘镇长, the duty officer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from devtools.demo.capgen import cap_xml
from devtools.simulators.tencent_sms_api import TencentSmsApi
from support.channel_stack import free_port
from support.speaker_support import eventually
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import (
    ApiCfg,
    County,
    DatabaseCfg,
    DeliveryCfg,
    PublicBudgetCfg,
    PublicCfg,
    ServerCfg,
    Settings,
    SmsCfg,
    TencentCfg,
)
from warnd.db.models import Delivery, Person, Region

TOKEN = "public-token-0123456789"
CB = "public-callback-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNTY, T1, T2 = "431222", "431222100", "431222101"
VA, GA, VB, VC = "431222100200", "431222100200001", "431222100201", "431222101200"

REGIONS = [
    Region(code=COUNTY, name="沅陵县", level="county"),
    Region(code=T1, name="官庄镇", level="township", parent_code=COUNTY),
    Region(code=T2, name="马底驿镇", level="township", parent_code=COUNTY),
    Region(code=VA, name="辰龙关村", level="village", parent_code=T1),
    Region(code=GA, name="一组", level="group", parent_code=VA),
    Region(code=VB, name="界亭驿村", level="village", parent_code=T1),
    Region(code=VC, name="沿溪村", level="village", parent_code=T2),
]


def _p(n: int, name: str, role: str, region: str) -> Person:
    phone = f"+86139000000{n:02d}"
    return Person(key=phone, name=name, phone=phone, role=role, region_code=region, updated_at=T0)


PEOPLE = [_p(1, "张书记", "village_secretary", VA), _p(2, "李主任", "village_head", VA),
          _p(11, "陈书记", "village_secretary", VB), _p(31, "刘镇长", "township_head", T1),
          _p(99, "值班员", "duty_officer", COUNTY)]


@dataclass
class County_:
    engine: App
    clock: ManualClock
    sms: TencentSmsApi
    http: TestClient
    base: str

    @property
    def reply_url(self) -> str:
        return f"{self.base}/webhooks/tencent/sms/{CB}/reply"

    @property
    def status_url(self) -> str:
        return f"{self.base}/webhooks/tencent/sms/{CB}/status"

    async def reply(self, phone: str, text: str) -> None:
        code, body = await self.sms.send_reply(self.reply_url, phone, text, time_=int(self.clock.now().timestamp()))
        assert code == 200, body

    async def post_cap(self, identifier: str, villages: list[str], colour: str = "红色", step: str = "imminent",
                       status: str = "Actual") -> int:
        r = await self.http.post("/api/v1/alerts", headers=AUTH, data=cap_xml(
            identifier, self.clock.now(), self.clock.now() + timedelta(hours=1), colour, "1小时内将出现特大暴雨",
            "山洪风险极高，请立即撤离危险区。", villages, step=step, status=status))
        assert r.status == 201, await r.text()
        return int((await r.json())["id"])

    async def as_role(self, role: str) -> dict[str, str]:
        return bearer(await token_for(self.engine.db, f"u-{role}", role))

    async def alert(self, alert_id: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
        r = await self.http.get(f"/api/v1/alerts/{alert_id}", headers=headers or AUTH)
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body

    async def public_rows(self, alert_id: int) -> list[Delivery]:
        async with self.engine.db.read() as s:
            return list((await s.exec(select(Delivery).where(
                Delivery.alert_id == alert_id, Delivery.purpose == "public"))).all())

    async def settled(self, alert_id: int, within: float = 60) -> None:
        """Until the warning's public rows are all final (delivered, failed or cancelled)."""
        async def done() -> bool:
            rows = await self.public_rows(alert_id)
            async with self.engine.db.read() as s:
                from warnd.db.models import PublicCampaign

                c = await s.get(PublicCampaign, alert_id)
            return c is not None and c.state != "planning" and all(
                d.state in ("delivered", "failed", "cancelled") for d in rows)

        await eventually(done, within, what=f"public messages of alert {alert_id} final")


async def build_county(db_url: str, tmp: Path, *, per_day: int = 10, qps: float | None = None,
                       undeliverable: tuple[str, ...] = (), plan_chunk: int = 5000, start: bool = True) -> County_:
    clock = ManualClock(T0)
    sms = TencentSmsApi(undeliverable_numbers=undeliverable)
    await sms.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        county=County(code=COUNTY), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        server=ServerCfg(port=port, public_base_url=base), delivery=DeliveryCfg(recipient_min_interval_seconds=0),
        sms=SmsCfg(provider="tencent", tencent=TencentCfg(
            secret_id=sms.secret_id, secret_key=sms.secret_key, sdk_app_id=sms.sdk_app_id, sign_name=sms.sign_name,
            template_id="100001", endpoint=sms.base_url.split("://", 1)[1], callback_token=CB)),
        public=PublicCfg(budgets={"tencent": PublicBudgetCfg(per_day=per_day, qps=qps, burst=1 if qps else None)},
                         plan_chunk=plan_chunk),
    )
    engine = App.build(settings, clock=clock)
    await engine.db.upgrade()
    async with engine.db.session() as s, s.begin():
        s.add_all([Region(**r.model_dump()) for r in REGIONS])
        s.add_all([Person(**p.model_dump(exclude={"id"})) for p in PEOPLE])
    if start:
        await engine.start()
    http = TestClient(TestServer(make_app(engine), port=port))
    await http.start_server()
    c = County_(engine, clock, sms, http, base)
    sms.status_callback_url = c.status_url  # the carrier's 状态报告 come back to our webhook
    return c


async def stop_county(c: County_) -> None:
    await c.http.close()
    await asyncio.wait_for(c.engine.stop(), 30)
    await c.sms.stop()
