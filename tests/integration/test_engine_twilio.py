"""The engine on Twilio: the real SDK against a local server speaking Twilio's API; signed
status callbacks mark deliveries delivered; a signed inbound reply confirms the call (for
non-+86 numbers — Twilio does not deliver replies from China, see docs/sms-providers.md)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from channels.base import DeliveryReport
from channels.sms_twilio import INBOUND_PATH
from devtools.demo.capgen import cap_xml
from devtools.simulators.twilio_api import TwilioApi
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import ApiCfg, County, DatabaseCfg, ServerCfg, Settings, SmsCfg, TwilioCfg
from warnd.db.models import Delivery, Inbound, Person, Region
from warnd.engine.reports import PARKED, apply_parked_reports

TOKEN = "test-token-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
PHONES = ("+14155550101", "+14155550102")


@dataclass
class Stack:
    engine: App
    sim: TwilioApi
    http: TestClient
    base: str
    officer: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def stack(db_url: str) -> AsyncIterator[Stack]:
    sim = TwilioApi()
    await sim.start()
    port = _free_port()  # Twilio signs the public URL, so it must be known before the app
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        server=ServerCfg(public_base_url=base),
        sms=SmsCfg(provider="twilio", twilio=TwilioCfg(
            account_sid=sim.account_sid, auth_token=sim.auth_token, from_number="+15005550006",
            api_base_url=sim.base_url)),
    )
    engine = App.build(settings, clock=ManualClock(T0))
    async with engine.db.session() as s, s.begin():
        s.add_all([
            Region(code="431222", name="沅陵县", level="county"),
            Region(code="431222100", name="官庄镇", level="township", parent_code="431222"),
            Region(code="431222100200", name="辰龙关村", level="village", parent_code="431222100"),
        ])
        s.add_all([Person(key=p, name=n, phone=p, role=r, region_code="431222100200", updated_at=T0)
                   for p, n, r in zip(PHONES, ("张书记", "李主任"), ("village_secretary", "village_head"),
                                      strict=True)])
    await engine.start()
    officer = bearer(await token_for(engine.db, "duty", "duty_officer"))
    http = TestClient(TestServer(make_app(engine), host="127.0.0.1", port=port))
    await http.start_server()
    try:
        yield Stack(engine, sim, http, base, officer)
    finally:
        await http.close()
        await engine.stop()
        await sim.stop()


async def test_twilio_sends_reports_delivery_and_a_signed_reply_confirms(stack: Stack) -> None:
    body = cap_xml("TW-1", T0, T0 + timedelta(hours=1), "黄色", "1小时内将出现暴雨", "请组织转移。",
                   ["431222100200"], step="imminent")
    r = await stack.http.post("/api/v1/alerts", data=body, headers={"Authorization": f"Bearer {TOKEN}"})
    alert = await r.json()
    assert r.status == 201 and alert["calls"] == 2
    msgs = await stack.sim.wait_for_messages(2, timeout=30)
    assert sorted(m.to for m in msgs) == sorted(PHONES)

    # The handsets got them: signed status callbacks, as Twilio posts them.
    for m in msgs:
        assert (await stack.sim.send_status(m, "sent"))[0] == 204  # Twilio takes any 2xx
        assert (await stack.sim.send_status(m, "delivered"))[0] == 204
    # Either order works: a report that overtook our record of the send was parked and is
    # applied when the outbox records it.
    await asyncio.wait_for(stack.engine.outbox.wait_recorded(2), 30)
    async with stack.engine.db.read() as s:
        states = sorted((await s.exec(select(Delivery.state))).all())
    assert states == ["delivered", "delivered"]

    status, _ = await stack.sim.send_inbound(stack.base + INBOUND_PATH, PHONES[0], "收到")
    assert status == 200
    calls = await stack.http.get(f"/api/v1/alerts/{alert['id']}/calls", headers=stack.officer)
    by_name = {c["name"]: c for c in (await calls.json())["calls"]}
    assert by_name["张书记"]["state"] == "confirmed" and by_name["李主任"]["state"] == "open"


async def test_forged_twilio_callback_is_refused_and_changes_nothing(stack: Stack) -> None:
    r = await stack.http.post(INBOUND_PATH, data={"From": PHONES[0], "Body": "1", "MessageSid": "SM" + "0" * 32},
                              headers={"X-Twilio-Signature": "forged"})
    assert r.status == 403
    async with stack.engine.db.read() as s:
        assert (await s.exec(select(Delivery))).all() == []


async def test_a_report_that_overtakes_the_send_record_is_parked_then_applied(stack: Stack) -> None:
    report = DeliveryReport(provider="twilio", dedupe_key="SMfast:delivered", provider_id="SMfast",
                            delivered=True, final=True)
    await stack.engine.inbound.on_report(report)
    await stack.engine.inbound.on_report(report)  # the provider retries: parked once
    now = stack.engine.clock.now()
    async with stack.engine.db.session() as s, s.begin():
        d = Delivery(idempotency_key="k-fast", person_id=1, channel="sms", purpose="warning",
                     to_address=PHONES[0], body="x", state="sent", provider="twilio", provider_id="SMfast",
                     created_at=now)
        s.add(d)
        await s.flush()
        parked = (await s.exec(select(Inbound).where(Inbound.outcome == PARKED))).all()
        assert len(parked) == 1
        assert await apply_parked_reports(s, [(d.id or 0, "twilio", "SMfast")], now) == 1
    async with stack.engine.db.read() as s:
        assert (await s.exec(select(Delivery.state).where(Delivery.idempotency_key == "k-fast"))).one() == "delivered"
        assert (await s.exec(select(Inbound.outcome))).all() == ["applied"]
