"""The outbox sender.

Deliveries are rows written by the decision that needs them. This worker claims due rows
(compare-and-swap pending → sending with a lease), sends them, and records the receipt.

No official gets the same message twice because of a retry:
- the idempotency key is unique in the table, so a message is planned once;
- a row is claimed by one sender only (CAS on its state);
- a row found in `sending` after a crash is *in doubt*: before sending it again we ask the
  provider whether it already accepted it (Channel.find_sent) and only resend if not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import cast

import structlog
from sqlalchemy import bindparam, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import (
    BatchChannel,
    Channel,
    OutboundMessage,
    PermanentSendError,
    SendReceipt,
    TransientSendError,
)
from warnd.clock import Clock, utcnow
from warnd.config import DeliveryCfg
from warnd.core.domain import Purpose
from warnd.db.engine import Database
from warnd.db.models import Delivery
from warnd.engine import events
from warnd.engine.reports import apply_parked_reports

ERROR_BACKOFF_SECONDS = 1.0

log = structlog.get_logger("warnd.outbox")


def message_of(d: Delivery, context: str | None = None) -> OutboundMessage:
    """The message as the provider sees it; `context` is what was sent as its identity."""
    return OutboundMessage(idempotency_key=context or d.send_context or d.idempotency_key,
                           to=d.to_address, body=d.body, created_at=d.created_at)


T = Delivery.__table__  # type: ignore[attr-defined]  # Core table for bulk statements

AfterSent = Callable[[AsyncSession, list[Delivery], datetime], Awaitable[None]]


class Outbox:
    def __init__(self, db: Database, clock: Clock, channels: Mapping[str, Channel], cfg: DeliveryCfg,
                 after_sent: AfterSent | None = None, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.channels, self.cfg = db, clock, channels, cfg
        self.after_sent = after_sent  # runs in the transaction that records the sends
        # Sends move confirm deadlines (the window restarts at send): the escalation worker
        # may be sleeping until an older, later deadline and must look again.
        self.on_change = on_change
        self.recorded = 0  # sends recorded since start; `wait_recorded` lets tests wait on it
        self._recorded_cond = asyncio.Condition()
        self.wake = asyncio.Event()
        self._last_to: dict[str, datetime] = {}  # per-recipient throttle (this process)
        self._sem = asyncio.Semaphore(cfg.concurrency)

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        delay = min(self.cfg.backoff_seconds * 2 ** max(attempts - 1, 0), self.cfg.backoff_max_seconds)
        return timedelta(seconds=max(delay, retry_after or 0))

    async def recover_in_doubt(self, everything: bool) -> int:
        """Resolve rows left in `sending` by a crashed sender. `everything` at start-up of a
        single-instance deployment; otherwise only rows whose lease has expired."""
        now = self.clock.now()
        async with self.db.read() as s:
            q = select(Delivery).where(Delivery.state == "sending")
            if not everything:
                q = q.where(col(Delivery.lease_until) <= now)  # due at lease_until (next_due)
            rows = (await s.exec(q)).all()
        # Providers compare against their own (wall) clocks, not the engine's clock.
        since = utcnow() - timedelta(days=1)
        for d in rows:
            channel = self.channels.get(d.channel)
            receipt: SendReceipt | None = None
            if channel is not None:
                try:
                    receipt = await channel.find_sent(message_of(d, d.send_context), since=since)
                except Exception as e:  # provider unreachable: keep it in doubt, try later
                    log.warning("in-doubt lookup failed", delivery=d.id, error=str(e))
                    async with self.db.session() as s, s.begin():  # later: not in a busy loop
                        await self._set(s, d, "sending", lease_until=now + self.backoff(1, None))
                    continue
            async with self.db.session() as s, s.begin():
                if receipt is not None:
                    ok = await self._set(s, d, "sending", state="sent", provider=receipt.provider,
                                         provider_id=receipt.provider_id, sent_at=now, lease_until=None)
                    if ok:
                        events.record(s, now, "delivery_reconciled", alert_id=d.alert_id, call_id=d.call_id,
                                      delivery_id=d.id, person_id=d.person_id, provider_id=receipt.provider_id)
                        await self._after_sent(s, [d], now)
                        self.on_change()
                else:
                    await self._set(s, d, "sending", state="pending", next_attempt_at=now, lease_until=None)
            if receipt is not None:
                async with self.db.session() as s, s.begin():
                    await apply_parked_reports(s, [(d.id or 0, receipt.provider, receipt.provider_id)], now)
        return len(rows)

    async def _set(self, s: AsyncSession, d: Delivery, expect: str, **values: object) -> bool:
        res = await s.exec(update(Delivery).where(
            col(Delivery.id) == d.id, col(Delivery.state) == expect).values(**values))
        return bool(res.rowcount == 1)

    async def _after_sent(self, s: AsyncSession, sent: list[Delivery], now: datetime) -> None:
        if self.after_sent is not None:
            await self.after_sent(s, [d for d in sent if d.purpose == Purpose.WARNING and d.call_id], now)

    async def pass_once(self, batch: int = 1000) -> int:
        """Claim and send one batch of due deliveries. Returns how many were attempted."""
        now = self.clock.now()
        async with self.db.read() as s:
            due = (await s.exec(select(Delivery).where(
                Delivery.state == "pending", col(Delivery.next_attempt_at) <= now).order_by(
                col(Delivery.next_attempt_at), col(Delivery.id)).limit(batch))).all()
        if not due:
            return 0
        min_gap = timedelta(seconds=self.cfg.recipient_min_interval_seconds)
        lease = now + timedelta(seconds=self.cfg.lease_seconds)
        groups = self._group([d for d in due if self._throttle_ok(d, now, min_gap)])
        claimed: list[list[Delivery]] = []
        async with self.db.session() as s, s.begin():
            for d in due:
                if not self._throttle_ok(d, now, min_gap):
                    # One person is not flooded across overlapping warnings.
                    await self._set(s, d, "pending", next_attempt_at=self._last_to[d.to_address] + min_gap)
            conn = await s.connection()
            for group in groups:
                context = group[0].idempotency_key if len(group) == 1 else f"batch:{uuid.uuid4().hex}"
                res = await conn.execute(update(T).where(
                    T.c.id.in_([d.id for d in group]), T.c.state == "pending").values(
                    state="sending", attempts=T.c.attempts + 1, lease_until=lease, send_context=context,
                ).returning(T.c.id))
                won = {r[0] for r in res}
                got = [d for d in group if d.id in won]
                for d in got:
                    d.attempts, d.send_context = d.attempts + 1, context
                    self._last_to[d.to_address] = now
                if got:
                    claimed.append(got)
        results = await asyncio.gather(*(self._send(g) for g in claimed))
        async with self.db.session() as s, s.begin():
            sent: list[tuple[Delivery, SendReceipt]] = []
            for group, outcomes in zip(claimed, results, strict=True):
                for d, outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, SendReceipt):
                        sent.append((d, outcome))
                    else:
                        await self._record_failure(s, d, outcome, now)
            if sent:
                conn = await s.connection()
                await conn.execute(update(T).where(T.c.id == bindparam("did"), T.c.state == "sending").values(
                    state="sent", provider=bindparam("prov"), provider_id=bindparam("pid"), sent_at=now,
                    lease_until=None, last_error=None),
                    [{"did": d.id, "prov": r.provider, "pid": r.provider_id} for d, r in sent])
                events.record_many(s, [events.row(
                    now, "delivery_sent", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                    person_id=d.person_id, provider=r.provider, provider_id=r.provider_id, attempt=d.attempts)
                    for d, r in sent])
                await self._after_sent(s, [d for d, _ in sent], now)
        if sent:
            # After the commit, so a report parked meanwhile is seen by one side or the other.
            async with self.db.session() as s, s.begin():
                await apply_parked_reports(s, [(d.id or 0, r.provider, r.provider_id) for d, r in sent], now)
        if claimed:
            self.on_change()
            async with self._recorded_cond:
                self.recorded += len(sent)
                self._recorded_cond.notify_all()
        return len(due)

    def _throttle_ok(self, d: Delivery, now: datetime, min_gap: timedelta) -> bool:
        last = self._last_to.get(d.to_address)
        return last is None or now - last >= min_gap or d.purpose == Purpose.REPLY_HELP

    def _group(self, rows: list[Delivery]) -> list[list[Delivery]]:
        """Same text on a batch-capable channel goes out in provider batches; the rest singly.
        One recipient appears once per group (a batch is one request)."""
        out: list[list[Delivery]] = []
        batches: dict[tuple[str, str], tuple[list[Delivery], set[str]]] = {}
        for d in rows:
            channel = self.channels.get(d.channel)
            if channel is None or not hasattr(channel, "send_many"):
                out.append([d])
                continue
            group, recipients = batches.setdefault((d.channel, d.body), ([], set()))
            if d.to_address in recipients:
                out.append([d])
                continue
            group.append(d)
            recipients.add(d.to_address)
            if len(group) >= int(getattr(channel, "max_batch", 1)):
                out.append(group)
                del batches[(d.channel, d.body)]
        out.extend(group for group, _ in batches.values())
        return out

    async def _send(self, group: list[Delivery]) -> list[SendReceipt | Exception]:
        channel = self.channels.get(group[0].channel)
        if channel is None:
            return [PermanentSendError(f"no channel {group[0].channel!r} configured") for _ in group]
        async with self._sem:
            try:
                if len(group) > 1:
                    many = cast(BatchChannel, channel)
                    return list(await many.send_many([message_of(d) for d in group], group[0].send_context or ""))
                return [await channel.send(message_of(group[0]))]
            except (TransientSendError, PermanentSendError) as e:
                return [e for _ in group]
            except Exception as e:  # an SDK bug or network oddity: treat as transient
                return [TransientSendError(f"{type(e).__name__}: {e}") for _ in group]

    async def _record_failure(self, s: AsyncSession, d: Delivery, outcome: Exception, now: datetime) -> None:
        final = isinstance(outcome, PermanentSendError) or d.attempts >= self.cfg.max_attempts
        if final:
            await self._set(s, d, "sending", state="failed", last_error=str(outcome), lease_until=None)
            events.record(s, now, "delivery_failed", alert_id=d.alert_id, call_id=d.call_id,
                          delivery_id=d.id, person_id=d.person_id, error=str(outcome), attempts=d.attempts)
        else:
            retry_after = outcome.retry_after if isinstance(outcome, TransientSendError) else None
            await self._set(s, d, "sending", state="pending", last_error=str(outcome), lease_until=None,
                            next_attempt_at=now + self.backoff(d.attempts, retry_after))
            events.record(s, now, "delivery_retry", alert_id=d.alert_id, call_id=d.call_id,
                          delivery_id=d.id, person_id=d.person_id, error=str(outcome), attempt=d.attempts)

    async def wait_records_after(self, seen: int) -> None:
        """Until more than `seen` sends have been recorded."""
        await self.wait_recorded(seen + 1)

    async def wait_recorded(self, n: int) -> None:
        """Until at least `n` sends have been recorded as sent (for tests and drills)."""
        async with self._recorded_cond:
            await self._recorded_cond.wait_for(lambda: self.recorded >= n)

    async def next_due(self) -> datetime | None:
        """The next pending send, or the next lease to expire: rows a crashed sender left in
        `sending` must be reconciled when their lease runs out, not whenever new work comes."""
        async with self.db.read() as s:
            pending = (await s.exec(select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == "pending"))).first()
            lease = (await s.exec(select(func.min(Delivery.lease_until)).where(
                Delivery.state == "sending"))).first()
        return min((t for t in (pending, lease) if t is not None), default=None)

    async def run(self, single_instance: bool = True) -> None:
        await self.recover_in_doubt(everything=single_instance)
        while True:
            self.wake.clear()
            try:
                while await self.pass_once():
                    pass
                await self.recover_in_doubt(everything=False)
                nxt = await self.next_due()
            except Exception:
                # A database hiccup: back off in real time (clock time may be frozen in
                # tests or racing in drills), then try the whole pass again.
                log.exception("outbox pass failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            await self.clock.wait_until(nxt, self.wake)


