"""No silent failure: a duty-room notice is a log line, an event and an SMS to each duty
officer, queued once per condition; an empty duty room is itself reported."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import col, select

from warnd.config import load_templates
from warnd.db.engine import Database
from warnd.db.models import Delivery, Event, Person, Region
from warnd.engine.notices import notify_duty_room
from warnd.engine.roster import RosterCache

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


async def _roster(db: Database, duty: int) -> RosterCache:
    async with db.session() as s, s.begin():
        s.add(Region(code="431222", name="沅陵县", level="county"))
        s.add_all([Person(key=f"+86139000000{i:02d}", name=f"值班员{i}", phone=f"+86139000000{i:02d}",
                          role="duty_officer", region_code="431222", updated_at=NOW) for i in range(duty)])
    return RosterCache(db)


@pytest.mark.parametrize("attempts", [1, 2])
async def test_notice_reaches_every_duty_officer_once_per_condition(db: Database, attempts: int) -> None:
    roster = await _roster(db, duty=2)
    templates = load_templates(None)
    queued = []
    for _ in range(attempts):  # the same condition seen again by another pass: no second SMS
        async with db.session() as s, s.begin():
            queued.append(await notify_duty_room(s, await roster.get(), templates, NOW, kind="provider_failing",
                                                 details="短信平台拒绝发送：签名未审核", key="provider:tencent:1",
                                                 provider="tencent"))
    assert queued == [2] + [0] * (attempts - 1)
    async with db.read() as s:
        rows = (await s.exec(select(Delivery).order_by(col(Delivery.id)))).all()
        events = (await s.exec(select(Event).where(Event.kind == "provider_failing"))).all()
    assert [r.to_address for r in rows] == ["+8613900000000", "+8613900000001"]
    assert all(r.purpose == "duty_notice" and "【值班室提醒】短信平台拒绝发送" in r.body for r in rows)
    assert len(events) == attempts and events[0].data["details"] == "短信平台拒绝发送：签名未审核"


async def test_an_empty_duty_room_is_reported_not_silent(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    roster = await _roster(db, duty=0)
    async with db.session() as s, s.begin():
        n = await notify_duty_room(s, await roster.get(), load_templates(None), NOW, kind="send_rejected",
                                   details="号码无效", key="d:1")
    assert n == 0
    async with db.read() as s:
        kinds = [e.kind for e in (await s.exec(select(Event))).all()]
    assert kinds == ["send_rejected", "duty_room_empty"]
