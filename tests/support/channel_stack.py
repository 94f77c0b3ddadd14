"""A full engine stack for the confirm-channel tests: API + webhooks on a fixed local port
(so provider signatures over public_base_url match), Twilio SMS through the official SDK to
the Twilio simulator, optional extra channels, a small county on a manual clock."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from channels.base import Channel
from channels.sms_twilio import TwilioSms
from devtools.demo.capgen import cap_xml
from devtools.simulators.twilio_api import TwilioApi
from support.users import bearer, token_for
from warnd.api.app import make_app
from warnd.app import App
from warnd.clock import ManualClock
from warnd.config import (
    ApiCfg,
    County,
    DatabaseCfg,
    MetricsCfg,
    PolicyCfg,
    ServerCfg,
    Settings,
    package_default,
)
from warnd.db.models import Person, Region

TOKEN = "test-token-0123456789"
METRICS_TOKEN = "test-metrics-token-0123456789"
T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)  # 10:00 Beijing time (day)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LINK_RE = re.compile(r"https?://[^\s，。]+/c/([A-Za-z0-9_-]{32})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def person(key: str, name: str, role: str, region: str, deputy: str | None = None,
           wecom: str | None = None) -> Person:
    return Person(key=key, name=name, phone=key, role=role, region_code=region, deputy_key=deputy,
                  wecom_userid=wecom, updated_at=T0)


PEOPLE = [
    person("+8613900000001", "张书记", "village_secretary", "431222100200", "+8613900000002", "zhangsj"),
    person("+8613900000002", "李主任", "village_head", "431222100200", "+8613900000001", "lizr"),
    person("+8613900000003", "王网格", "grid_worker", "431222100200", "+8613900000002", "wangwg"),
    person("+8613900000004", "赵组长", "group_leader", "431222100200001"),
    person("+8613900000005", "刘镇长", "township_head", "431222100"),
    person("+8613900000009", "值班员", "duty_officer", "431222"),
]


@dataclass
class Stack:
    engine: App
    clock: ManualClock
    twilio: TwilioApi
    http: TestClient
    base: str
    officer: dict[str, str] = field(default_factory=dict)  # a duty officer's personal token
    extra: dict[str, Any] = field(default_factory=dict)

    async def post_cap(self, body: bytes) -> dict[str, Any]:
        r = await self.http.post("/api/v1/alerts", data=body, headers=AUTH)
        assert r.status == 201, await r.text()
        data: dict[str, Any] = await r.json()
        return data

    async def calls(self, alert_id: int) -> dict[str, dict[str, Any]]:
        r = await self.http.get(f"/api/v1/alerts/{alert_id}/calls", headers=self.officer)
        assert r.status == 200
        return {c["name"]: c for c in (await r.json())["calls"]}


def imminent(identifier: str = "RS-1", colour: str = "黄色", sent: datetime = T0) -> bytes:
    return cap_xml(identifier, sent, sent + timedelta(hours=1), colour, "1小时内将出现暴雨", "请组织转移。",
                   ["431222100200"], step="imminent")


def write_policy(tmp: Path, channels: str, target_channels: str = "", rung_channels: str = "",
                 extra: str = "") -> Path:
    """The default policy with `channels = [...]` replaced and optional per-target/rung channels."""
    text = package_default("policy.toml").read_text(encoding="utf-8")
    text = text.replace('channels = ["sms"]', f"channels = {channels}\n{extra}", 1)
    if target_channels:  # every target
        text = text.replace("\nroles = [", f"\nchannels = {target_channels}\nroles = [")
    if rung_channels:
        text = text.replace('{ action = "resend", wait_minutes = 5 }',
                            f'{{ action = "resend", wait_minutes = 5, channels = {rung_channels} }}')
    p = tmp / "policy.toml"
    p.write_text(text, encoding="utf-8")
    return p


def write_templates(tmp: Path, replace: Mapping[str, str]) -> Path:
    text = package_default("templates.toml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    p = tmp / "templates.toml"
    p.write_text(text, encoding="utf-8")
    return p


async def build_stack(db_url: str, tmp: Path, *, policy: Path | None = None, templates: Path | None = None,
                      channels: Callable[[str, TwilioApi], Mapping[str, Channel]] | None = None,
                      start: datetime = T0) -> Stack:
    clock = ManualClock(start)
    twilio = TwilioApi()
    await twilio.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        county=County(code="431222"), database=DatabaseCfg(url=db_url), api=ApiCfg(tokens=(TOKEN,)),
        server=ServerCfg(port=port, public_base_url=base),
        policy=PolicyCfg(path=str(policy or ""), templates=str(templates or "")),
        metrics=MetricsCfg(tokens=(METRICS_TOKEN,), cache_seconds=0),
    )
    chans: dict[str, Channel] = {"sms": TwilioSms(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                                  from_number="+15005550006", public_base_url=base,
                                                  api_base_url=twilio.base_url)}
    if channels is not None:
        chans.update(channels(base, twilio))
    engine = App.build(settings, clock=clock, channels=chans)
    async with engine.db.session() as s, s.begin():
        s.add_all([
            Region(code="431222", name="沅陵县", level="county"),
            Region(code="431222100", name="官庄镇", level="township", parent_code="431222"),
            Region(code="431222100200", name="辰龙关村", level="village", parent_code="431222100"),
            Region(code="431222100200001", name="辰龙关村一组", level="group", parent_code="431222100200"),
        ])
        s.add_all([Person(**p.model_dump(exclude={"id"})) for p in PEOPLE])
    await engine.start()
    officer = bearer(await token_for(engine.db, "duty", "duty_officer"))
    http = TestClient(TestServer(make_app(engine), port=port))
    await http.start_server()
    return Stack(engine, clock, twilio, http, base, officer)


async def stop_stack(st: Stack) -> None:
    await st.http.close()
    await st.engine.stop()
    await st.twilio.stop()
