"""Provider outages (issue 9, part 2): a warning still in force is never given up while the
provider is down; after a configured time it fails over to a second provider; the duty room
is told once when a provider fails and once when it is back; the backlog goes out most
urgent first, within the provider's request rate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from channels.base import ChannelBase, OutboundMessage, SendReceipt, TransientSendError
from channels.sms_tencent import TencentSms
from devtools.simulators import TencentSmsApi
from support.phones import CB, OFFICIALS, CountyHarness, county, imminent
from warnd.clock import ManualClock
from warnd.config import DeliveryCfg
from warnd.core.domain import DeliveryState
from warnd.db.engine import Database
from warnd.db.models import Alert, Delivery, Event
from warnd.engine.outbox import Outbox, Pacer

DUTY = "+8613900000009"


async def rows(c: CountyHarness, *where: Any) -> list[Delivery]:
    async with c.app.db.read() as s:
        return list((await s.exec(select(Delivery).where(*where).order_by(col(Delivery.id)))).all())


async def kinds(c: CountyHarness, kind: str) -> list[Event]:
    async with c.app.db.read() as s:
        return list((await s.exec(select(Event).where(Event.kind == kind))).all())


def warnings_to(lines: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(x["to"] for x in lines if "临灾预警" in x["text"] and "再次" not in x["text"])


async def test_a_ten_minute_outage_loses_no_warning_and_the_duty_room_is_told(db_url: str, tmp_path: Path) -> None:
    """Finding 2: with max_attempts = 6 a send was given up ~310 s after its first try and
    nothing sent it after the provider recovered. A warning in force persists."""
    async with county(db_url, log_path=tmp_path / "accepted.jsonl") as c:
        await c.sim.outage_start("refuse")
        body = await c.warn(imminent())
        for _ in range(24):  # twelve minutes of warnd time, the engine catching up every 30 s
            await c.fast_forward(seconds=30)
        warnings = await rows(c, Delivery.alert_id == body["id"], Delivery.purpose == "warning")
        assert warnings and {d.state for d in warnings} == {DeliveryState.PENDING}
        assert min(d.attempts for d in warnings) > c.app.settings.delivery.max_attempts
        assert not await rows(c, Delivery.state == DeliveryState.FAILED)
        [failing] = await kinds(c, "provider_failing")  # once, not once a pass
        assert failing.data["for_channel"] == "sms" and "ClientNetworkError" in failing.data["error"]
        # Back-off is capped: nothing waits longer than backoff_max_seconds for its next try.
        cap = timedelta(seconds=c.app.settings.delivery.backoff_max_seconds)
        assert all(d.next_attempt_at is not None and d.next_attempt_at - c.clock.now() <= cap for d in warnings)

        await c.sim.outage_stop()
        await c.fast_forward(seconds=30)  # the next try finds it back; the backlog goes out at once
        await c.fast_forward(seconds=30)
        got = warnings_to(c.sim.log_lines())
        assert got == dict.fromkeys({d.to_address for d in warnings}, 1)
        assert {d.state for d in await rows(c, Delivery.alert_id == body["id"], Delivery.purpose == "warning")} \
            == {DeliveryState.SENT}
        [recovered] = await kinds(c, "provider_recovered")
        assert recovered.at > failing.at
        # The duty officer got both notices (the failing one once the provider was back).
        texts = [x["text"] for x in c.sim.log_lines() if x["to"] == DUTY]
        assert sum("发送失败" in t for t in texts) == 1 and sum("已恢复" in t for t in texts) == 1
        assert not await rows(c, Delivery.state == DeliveryState.FAILED)


class EndsTheWarning(ChannelBase):
    """A provider that is busy while the warning ends (lifted between claim and answer)."""

    kind, provider = "sms", "fake"

    def __init__(self) -> None:
        self.db: Database | None = None
        self.sends: list[str] = []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        self.sends.append(msg.body)
        assert self.db is not None
        async with self.db.session() as s, s.begin():
            await (await s.connection()).execute(update(Alert.__table__).values(state="expired"))  # type: ignore[attr-defined]
        raise TransientSendError("tencent send: RequestLimitExceeded: busy")


async def test_a_message_whose_warning_ended_while_it_failed_is_dropped_not_retried(db_url: str) -> None:
    channel = EndsTheWarning()
    async with county(db_url, extra_channels={"sms": channel}) as c:
        channel.db = c.app.db
        body = await c.warn(imminent())
        await c.settle()
        warnings = await rows(c, Delivery.alert_id == body["id"], Delivery.purpose == "warning")
        assert warnings and {d.state for d in warnings} == {DeliveryState.CANCELLED}  # moot: not failed, not pending
        assert len(await kinds(c, "delivery_moot")) == len(warnings)
        tried = sum("临灾预警" in b for b in channel.sends)
        await c.fast_forward(minutes=10)
        assert sum("临灾预警" in b for b in channel.sends) == tried == len(warnings)


async def test_after_the_configured_time_a_failing_warning_fails_over_to_the_second_provider(
        db_url: str, tmp_path: Path) -> None:
    backup_sim = TencentSmsApi(log_path=tmp_path / "backup.jsonl")
    await backup_sim.start()
    backup = TencentSms(secret_id=backup_sim.secret_id, secret_key=backup_sim.secret_key,
                        sdk_app_id=backup_sim.sdk_app_id, sign_name=backup_sim.sign_name, template_id="100001",
                        endpoint=backup_sim.base_url.split("://", 1)[1], callback_token=CB + "-backup")
    cfg = DeliveryCfg(failover={"sms": "sms_backup"}, failover_after_seconds=120)
    try:
        async with county(db_url, log_path=tmp_path / "accepted.jsonl", delivery=cfg,
                          extra_channels={"sms_backup": backup}) as c:
            await c.sim.outage_start("refuse")
            body = await c.warn(imminent())
            await c.settle()
            # The duty room hears at once, through the second provider.
            assert [x["to"] for x in backup_sim.log_lines()] == [DUTY]
            for _ in range(6):
                await c.fast_forward(seconds=30)
            moved = await rows(c, Delivery.alert_id == body["id"], Delivery.channel == "sms_backup")
            first = await rows(c, Delivery.alert_id == body["id"], Delivery.channel == "sms",
                               Delivery.purpose == "warning")
            assert first and {d.state for d in first} == {DeliveryState.FAILED}
            assert {d.state for d in moved if d.purpose == "warning"} == {DeliveryState.SENT}
            assert warnings_to(backup_sim.log_lines()) == dict.fromkeys({d.to_address for d in first}, 1)
            assert len(await kinds(c, "delivery_failed_over")) == len(first)
            assert c.sim.log_lines() == []
    finally:
        await backup.close()
        await backup_sim.stop()


class Recorder(ChannelBase):
    kind, provider, max_batch = "sms", "fake", 1

    def __init__(self) -> None:
        self.order: list[str] = []

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        self.order.append(msg.body)
        return SendReceipt("fake", f"id{len(self.order)}")


async def test_a_backlog_goes_out_most_urgent_first(db_url: str) -> None:
    db = Database(db_url)
    try:
        clock = ManualClock()
        now = clock.now()
        steps = ["forecast", "warning", None, "imminent", "forecast", "imminent", "warning"]
        async with db.session() as s, s.begin():
            for i, step in enumerate(steps):  # all due since the same moment, oldest first
                s.add(Delivery(idempotency_key=f"k{i}", person_id=i + 1, channel="sms", purpose="warning",
                               step=step, to_address=f"+86139000001{i:02d}", body=f"{step}:{i}", state="pending",
                               attempts=3, next_attempt_at=now - timedelta(minutes=5), created_at=now))
        channel = Recorder()
        outbox = Outbox(db, clock, {"sms": channel}, DeliveryCfg(concurrency=1))
        await outbox.pass_once()
        assert [b.split(":")[0] for b in channel.order] == [
            "imminent", "imminent", "warning", "warning", "forecast", "forecast", "None"]
    finally:
        await db.close()


def test_requests_are_paced_to_the_providers_rate() -> None:
    t = [100.0]
    pacer = Pacer(4.0, monotonic=lambda: t[0])  # 4 requests a second
    assert [pacer.reserve() for _ in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    t[0] += 2.0
    assert pacer.reserve() == 0.0
    assert Pacer(None).reserve() == 0.0


def test_persisting_is_decided_by_whether_the_warning_is_in_force() -> None:
    from warnd.core.retries import AfterFailure, RetryFacts, after_failure, backoff_seconds

    now = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
    made = now - timedelta(minutes=30)
    live = RetryFacts("warning", 40, made, "active", now + timedelta(hours=1), "open")
    kw: dict[str, Any] = {"max_attempts": 6, "failover_after": timedelta(minutes=10), "can_fail_over": False}
    assert after_failure(live, now, **kw) == AfterFailure.RETRY
    assert after_failure(live, now, **{**kw, "can_fail_over": True}) == AfterFailure.FAIL_OVER
    for ended in (RetryFacts("warning", 1, made, "expired", None, "open"),
                  RetryFacts("warning", 1, made, "active", now, "open"),
                  RetryFacts("warning", 1, made, "active", None, "confirmed")):
        assert after_failure(ended, now, **kw) == AfterFailure.MOOT
    notice = RetryFacts("duty_notice", 60, now - timedelta(hours=23))  # a provider failing: told for a day
    assert after_failure(notice, now, **kw) == AfterFailure.RETRY
    assert after_failure(RetryFacts("duty_notice", 60, now - timedelta(days=1)), now, **kw) == AfterFailure.GIVE_UP
    assert after_failure(RetryFacts("reply_help", 6, now), now, **kw) == AfterFailure.GIVE_UP
    assert after_failure(RetryFacts("reply_help", 5, now), now, **kw) == AfterFailure.RETRY
    assert backoff_seconds(1, 10, 300) == 10 and backoff_seconds(4, 10, 300) == 80
    assert backoff_seconds(5000, 10, 300) == 300 and backoff_seconds(1, 10, 300, retry_after=30) == 30
    assert OFFICIALS  # the harness's county
