"""Provider faults (issue 9): a send without a definite answer is looked up before anything is
sent again; leases are longer than the provider's timeout; a send is recorded once.

The real engine and the real tencentcloud SDK against the local Tencent simulator, whose
append-only log of accepted numbers and texts says what the handsets received."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from support.phones import OFFICIALS, CountyHarness, county, imminent
from warnd.app import App
from warnd.clock import ManualClock, ScaledClock
from warnd.config import DatabaseCfg, DeliveryCfg, Settings, SmsCfg, TencentCfg
from warnd.config.errors import StartupError
from warnd.core.domain import DeliveryState
from warnd.db.engine import Database
from warnd.db.models import Delivery, Event
from warnd.engine import deliveries

DUTY = "+8613900000009"


async def rows(c: CountyHarness, *where: Any) -> list[Any]:
    async with c.app.db.read() as s:
        return list((await s.exec(select(Delivery).where(*where).order_by(col(Delivery.id)))).all())


async def kinds(c: CountyHarness, kind: str) -> list[Event]:
    async with c.app.db.read() as s:
        return list((await s.exec(select(Event).where(Event.kind == kind))).all())


def twice(c: CountyHarness) -> dict[tuple[str, str], int]:
    """Texts a handset got more than once, from the provider's own log."""
    return {k: n for k, n in Counter((x["to"], x["text"]) for x in c.sim.log_lines()).items() if n > 1}


@pytest.mark.parametrize("fault", ["answered after the SDK's timeout", "HTTP 500 after accepting"])
async def test_an_accepted_send_without_a_definite_answer_is_looked_up_not_sent_again(
        db_url: str, tmp_path: Path, fault: str) -> None:
    """Finding 1: the provider accepted the texts but the answer came after the SDK gave up
    (or as a 500): the outbox must ask the provider before sending anything again."""
    async with county(db_url, sms_timeout=1, log_path=tmp_path / "accepted.jsonl") as c:
        if fault.startswith("answered"):
            c.sim.late_rate = 1.0
        else:
            c.sim.accept_then_fail_next(10, 500)
        body = await c.warn(imminent())
        await c.settle()
        warnings = await rows(c, Delivery.alert_id == body["id"])
        assert warnings and {d.state for d in warnings} == {DeliveryState.SENDING}  # in doubt
        # The duty room's notice that the provider is failing is in doubt as well.
        everything = await rows(c)
        assert {d.purpose for d in everything if d.alert_id is None} == {"duty_notice"}
        assert {d.state for d in everything} == {DeliveryState.SENDING}
        assert len(await kinds(c, "delivery_in_doubt")) == len(everything)
        assert c.sim.answered_late + c.sim.failed_after_accept >= 1
        c.sim.late_rate = 0.0
        c.sim.release_late()
        await c.fast_forward(minutes=1)  # past the provider's lookup delay
        everything = await rows(c)
        assert {d.state for d in everything} == {DeliveryState.SENT}
        assert all(d.attempts == 1 and d.provider_id for d in everything)
        assert len(await kinds(c, "delivery_reconciled")) == len(everything)
        assert not await kinds(c, "delivery_sent")
        assert not twice(c)
        assert len(c.sim.log_lines()) == len(everything)


async def test_an_in_doubt_send_the_provider_never_took_is_sent_once_after_the_lookup(
        db_url: str, tmp_path: Path) -> None:
    """The gateway answered 500 without accepting: the lookup finds nothing, then it is sent."""
    async with county(db_url, log_path=tmp_path / "accepted.jsonl") as c:
        c.sim.fail_next(1, 500)
        body = await c.warn(imminent())
        await c.settle()
        assert {d.state for d in await rows(c, Delivery.alert_id == body["id"])} == {DeliveryState.SENDING}
        assert [x["to"] for x in c.sim.log_lines()] == [DUTY]  # only the duty room's notice went out
        await c.fast_forward(minutes=1)
        warnings = await rows(c, Delivery.alert_id == body["id"])
        assert {d.state for d in warnings} == {DeliveryState.SENT}
        assert len(await kinds(c, "delivery_released")) == len(warnings)
        assert len([x for x in c.sim.log_lines() if x["to"] != DUTY]) == len(warnings) and not twice(c)


async def test_a_refused_connection_is_definite_and_retried_without_a_lookup(db_url: str, tmp_path: Path) -> None:
    """Nothing can have been sent over a connection that was never made: plain retry."""
    async with county(db_url, log_path=tmp_path / "accepted.jsonl") as c:
        await c.sim.outage_start("refuse")
        body = await c.warn(imminent())
        await c.settle()
        pending = await rows(c, Delivery.alert_id == body["id"])
        assert {d.state for d in pending} == {DeliveryState.PENDING}
        assert not await kinds(c, "delivery_in_doubt") and await kinds(c, "delivery_retry")
        await c.sim.outage_stop()
        await c.fast_forward(seconds=30)  # the back-off, and the per-recipient spacing
        assert {d.state for d in await rows(c, Delivery.alert_id == body["id"])} == {DeliveryState.SENT}
        assert len([x for x in c.sim.log_lines() if x["to"] != DUTY]) == len(pending) and not twice(c)


def settings_with(db_url: str, **delivery: Any) -> Settings:
    return Settings(database=DatabaseCfg(url=db_url), delivery=DeliveryCfg(**delivery), sms=SmsCfg(
        provider="tencent", tencent=TencentCfg(secret_id="AKID", secret_key="k", sdk_app_id="1400000000",
                                               sign_name="县应急局", template_id="1", endpoint="127.0.0.1:9",
                                               callback_token="callback-secret-0123456789",
                                               timeout_seconds=15)))


async def test_a_lease_shorter_than_the_provider_timeout_is_refused_at_start(db_url: str) -> None:
    """Finding 4: a lease shorter than the provider's timeout lets another instance look a
    send up while it is still in flight. Refused at start with one line naming the minimum."""
    with pytest.raises(StartupError) as err:
        App.build(settings_with(db_url, lease_seconds=20), clock=ManualClock())
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "delivery.lease_seconds = 20" in message and "at least 40" in message
    app = App.build(settings_with(db_url, lease_seconds=40), clock=ManualClock())
    assert app.outbox.lease == timedelta(seconds=40)
    await app.db.close()
    app = App.build(settings_with(db_url), clock=ManualClock())  # automatic: 2 × (2 × 15 s) + 10 s
    assert app.outbox.lease == timedelta(seconds=70)
    await app.db.close()
    with pytest.raises(StartupError, match=r"at clock speed x600: .* at least 24000"):
        App.build(settings_with(db_url, lease_seconds=300), clock=ScaledClock(600))
    await app.db.close()


async def test_a_send_whose_guarded_update_matched_nothing_records_no_delivery_sent(db_url: str) -> None:
    """Finding 4: the row was already moved to `sent` (and carries this sender's token from
    another attempt): recording this send again must change nothing and record no event."""
    db = Database(db_url)
    try:
        clock = ManualClock()
        now = clock.now()
        async with db.session() as s, s.begin():
            s.add(Delivery(idempotency_key="k1", person_id=OFFICIALS[0].id or 1, channel="sms", purpose="warning",
                           to_address="+8613900000001", body="x", state="sent", attempts=2, claim="mine",
                           provider="tencent", provider_id="serial-2", next_attempt_at=now, created_at=now))
        async with db.read() as s:
            [row] = (await s.exec(select(Delivery))).all()
        async with db.session() as s, s.begin():
            moved = await deliveries.mark_sent(s, [(row, "tencent", "serial-1")], now, "mine")
        assert moved == []
        async with db.read() as s:
            assert (await s.exec(select(Event).where(Event.kind == "delivery_sent"))).all() == []
            assert (await s.exec(select(Delivery.provider_id))).all() == ["serial-2"]
    finally:
        await db.close()
