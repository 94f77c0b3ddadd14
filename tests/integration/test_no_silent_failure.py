"""No silent failure (issue 12, part 4): a send rejected permanently, a provider rejecting
every message, a call handed to an empty duty room and a source gone stale are each an
error-level log line with the reason, an event and a notice to whoever is on duty."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from structlog.testing import capture_logs

from support.phones import OFFICIALS, T0, county, imminent
from warnd.config import load_templates
from warnd.db.engine import Database
from warnd.db.models import Delivery, Event, FeedState, Person, Region
from warnd.engine.roster import RosterCache
from warnd.engine.watch import Watch

DUTY = "+8613900000009"


async def _events(db: Database, kind: str) -> list[Event]:
    async with db.read() as s:
        return list((await s.exec(select(Event).where(Event.kind == kind).order_by(col(Event.id)))).all())


def _errors(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["log_level"] == "error" and e["event"] == event]


async def test_a_send_rejected_permanently_is_told_to_the_duty_room(db_url: str) -> None:
    async with county(db_url) as c:
        c.sim.fail_numbers.add("+8613900000003")  # 王网格's number is refused by the provider
        with capture_logs() as logs:
            await c.warn(imminent())
            await c.settle()
            notice = await c.phone(DUTY).expect_sms("【值班室提醒】")
        assert "王网格" in notice.body and "被拒绝" in notice.body and "IncorrectPhoneNumber" in notice.body
        told = await _events(c.app.db, "send_rejected")
        assert len(told) == 1 and told[0].alert_id is not None
        assert "IncorrectPhoneNumber" in told[0].data["error"]
        assert _errors(logs, "send rejected") and "王网格" in _errors(logs, "send rejected")[0]["details"]
        # Seen again (another pass, a poll): no second notice.
        await c.fast_forward(minutes=1)
        assert len(await _events(c.app.db, "send_rejected")) == 1
        assert [m for m in c.sim.messages if m.to == DUTY and "值班室提醒" in m.body] == [notice]


async def test_a_provider_rejecting_every_message_is_one_notice(db_url: str) -> None:
    async with county(db_url) as c:
        c.sim.sign_name = "另一个签名"  # the account's approved 短信签名 is not the one configured
        with capture_logs() as logs:
            await c.warn(imminent())
            await c.settle()
        told = await _events(c.app.db, "provider_failing")
        assert len(told) == 1
        assert told[0].data["for_channel"] == "sms" and "SignatureIncorrectOrUnapproved" in told[0].data["error"]
        assert "短信平台连续拒绝发送" in told[0].data["details"]
        line = _errors(logs, "provider failing")
        assert line and "SignatureIncorrectOrUnapproved" in line[0]["error"]
        # The individual rejections are covered by it, not one notice each.
        assert await _events(c.app.db, "send_rejected") == []
        async with c.app.db.read() as s:
            notices = (await s.exec(select(Delivery).where(Delivery.purpose == "duty_notice"))).all()
        assert [n.to_address for n in notices] == [DUTY]  # queued (the same provider refuses it too)


async def test_a_call_handed_to_an_empty_duty_room_is_said(db_url: str) -> None:
    nobody_on_duty = [p for p in OFFICIALS if p.role != "duty_officer"]
    async with county(db_url, officials=nobody_on_duty) as c:
        alert = await c.warn(imminent())
        with capture_logs() as logs:
            for _ in range(6):  # resend → deputy → superior → duty room, whatever the ladder
                await c.fast_forward(minutes=30)
        handed = await _events(c.app.db, "call_to_duty_room")
        assert handed, "the ladder reached the duty room"
        told = await _events(c.app.db, "call_to_empty_duty_room")
        assert {e.call_id for e in told} == {e.call_id for e in handed}
        assert all(e.alert_id == alert["id"] and "值班室没有值班员" in e.data["details"] for e in told)
        assert len(await _events(c.app.db, "duty_room_empty")) == len(told)
        assert _errors(logs, "call to empty duty room")
        assert _errors(logs, "duty room has no duty officer: a notice reaches nobody")


@pytest.mark.parametrize("failures", [0, 3])
async def test_a_source_gone_stale_is_told_once(db: Database, failures: int) -> None:
    async with db.session() as s, s.begin():
        s.add(Region(code="431222", name="沅陵县", level="county"))
        s.add(Person(key=DUTY, name="值班员", phone=DUTY, role="duty_officer", region_code="431222", updated_at=T0))
        s.add(FeedState(source="sheng-qxt", last_success_at=T0 - timedelta(minutes=30), failures=failures,
                        last_error="HTTP 503" if failures else None,
                        last_error_at=T0 - timedelta(minutes=1) if failures else None))
        s.add(FeedState(source="fresh", last_success_at=T0 - timedelta(minutes=1)))
    now = T0

    class Clock:
        def now(self) -> Any:
            return now

    watch = Watch(db, Clock(), RosterCache(db, ttl=0), load_templates(None),  # type: ignore[arg-type]
                  sources={"sheng-qxt": ("cap_poll", 60.0), "fresh": ("cap_poll", 60.0)})
    with capture_logs() as logs:
        await watch.step()
        await watch.step()  # still stale: not told again
    told = await _events(db, "source_stale")
    assert [e.data["source"] for e in told] == ["sheng-qxt"]
    assert told[0].data["condition"] == ("source_failing" if failures else "source_stale")
    assert "信息源“sheng-qxt”已30分钟没有更新" in told[0].data["details"]
    assert _errors(logs, "source stale")
    async with db.read() as s:
        notices = (await s.exec(select(Delivery).where(Delivery.purpose == "duty_notice"))).all()
    assert [n.to_address for n in notices] == [DUTY] and "sheng-qxt" in notices[0].body
