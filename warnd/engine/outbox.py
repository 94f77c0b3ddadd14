"""The outbox module: hands due deliveries to their channels.

Deliveries are rows written by the decision that needs them (warnd.engine.deliveries owns
their transitions). Each pass claims due rows (compare-and-swap pending → sending, stamped
with this sender's claim token and a lease), sends them — identical texts on a batch-capable
channel as provider batches — and records each outcome.

No official gets the same message twice because of a retry:
- the idempotency key is unique in the table, so a message is planned once;
- a row is claimed by one sender only (CAS on its state), and only the holder of its claim
  token may record its outcome;
- a row found in `sending` after its lease ran out (a crashed or hung sender) is *in doubt*:
  this sender takes it over, asks the provider whether it already accepted it
  (Channel.find_sent) and only sends it again if not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import case
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import (
    Channel,
    OutboundMessage,
    PermanentSendError,
    SendReceipt,
    TransientSendError,
)
from warnd.clock import Clock, utcnow
from warnd.config import DeliveryCfg
from warnd.core.domain import DeliveryState, Purpose
from warnd.db.engine import Database
from warnd.db.models import Delivery
from warnd.engine import deliveries
from warnd.engine.module import ModuleBase
from warnd.engine.reports import apply_parked_reports

log = structlog.get_logger("warnd.outbox")

AfterSent = Callable[[AsyncSession, list[Delivery], datetime], Awaitable[None]]


def message_of(d: Delivery, context: str | None = None) -> OutboundMessage:
    """The message as the provider sees it; `context` is what was sent as its identity."""
    return OutboundMessage(idempotency_key=context or d.send_context or d.idempotency_key,
                           to=d.to_address, body=d.body, created_at=d.created_at)


class Outbox(ModuleBase):
    name = "outbox"
    poll_seconds = 5.0  # rows written by another process or instance send no wake

    def __init__(self, db: Database, clock: Clock, channels: Mapping[str, Channel], cfg: DeliveryCfg, *,
                 after_sent: AfterSent | None = None, on_change: Callable[[], None] = lambda: None,
                 single_instance: bool = False, purposes: frozenset[Purpose] | None = None,
                 exclude_purposes: frozenset[Purpose] = frozenset(), urgent_first: bool = False,
                 name: str | None = None):
        super().__init__()
        # Which rows this sender owns: public traffic has its own outbox (warnd.public), so
        # officials' 叫应 messages never queue behind a mass fan-out. `urgent_first`: due rows
        # of a higher 631 step first (an imminent warning before a lower step's backlog).
        self.purposes, self.exclude_purposes, self.urgent_first = purposes, exclude_purposes, urgent_first
        if name is not None:
            self.name = name
        self.db, self.clock, self.channels, self.cfg = db, clock, channels, cfg
        self.after_sent = after_sent  # runs in the transaction that records the sends
        # Sends move confirm deadlines (the window restarts at send): the escalation module
        # may be sleeping until an older, later deadline and must look again.
        self.on_change = on_change
        self.single_instance = single_instance  # SQLite: at start-up every `sending` row is ours to resolve
        self.token = uuid.uuid4().hex  # this sender's claim token
        self.recorded = 0  # sends recorded since start; `wait_recorded` lets tests wait on it
        self._recorded_cond = asyncio.Condition()
        self._last_to: dict[str, datetime] = {}  # per-recipient spacing (this process)
        self._sem = asyncio.Semaphore(cfg.concurrency)

    # -- the module contract ---------------------------------------------------------------

    async def start(self) -> None:
        await self.recover_in_doubt(everything=self.single_instance)

    async def step(self) -> bool:
        return bool(await self.pass_once() or await self.recover_in_doubt(everything=False))

    async def next_due(self) -> datetime | None:
        """The next pending send, or the next lease to run out: rows a crashed sender left in
        `sending` must be reconciled when their lease ends, not whenever new work comes."""
        async with self.db.read() as s:
            pending = (await s.exec(self._mine(select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state == DeliveryState.PENDING)))).first()
            lease = (await s.exec(self._mine(select(func.min(Delivery.lease_until)).where(
                Delivery.state == DeliveryState.SENDING)))).first()
        return min((t for t in (pending, lease) if t is not None), default=None)

    # -- sending ---------------------------------------------------------------------------

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        delay = min(self.cfg.backoff_seconds * 2 ** max(attempts - 1, 0), self.cfg.backoff_max_seconds)
        return timedelta(seconds=max(delay, retry_after or 0))

    async def pass_once(self, batch: int = 1000) -> int:
        """Claim and send one batch of due deliveries. Returns how many were due."""
        now = self.clock.now()
        async with self.db.read() as s:
            order = [col(Delivery.next_attempt_at), col(Delivery.id)]
            if self.urgent_first:
                order.insert(0, case({"imminent": 0, "warning": 1}, value=col(Delivery.step), else_=2))  # type: ignore[arg-type]
            due = (await s.exec(self._mine(select(Delivery).where(
                Delivery.state == DeliveryState.PENDING, col(Delivery.next_attempt_at) <= now)).order_by(
                *order).limit(batch))).all()
        if not due:
            return 0
        min_gap = timedelta(seconds=self.cfg.recipient_min_interval_seconds)
        lease = now + timedelta(seconds=self.cfg.lease_seconds)
        ready = [d for d in due if self._spacing_ok(d, now, min_gap)]
        claimed: list[list[Delivery]] = []
        async with self.db.session() as s, s.begin():
            # One person is not flooded across overlapping warnings.
            await deliveries.defer(s, [(d.id or 0, self._last_to[d.to_address] + min_gap)
                                       for d in due if not self._spacing_ok(d, now, min_gap)])
            for group in self._group(ready):
                context = group[0].idempotency_key if len(group) == 1 else f"batch:{uuid.uuid4().hex}"
                won = await deliveries.claim(s, [d.id or 0 for d in group], lease_until=lease, context=context,
                                             token=self.token)
                got = [d for d in group if d.id in won]
                for d in got:
                    d.attempts, d.send_context, d.claim = d.attempts + 1, context, self.token
                    self._last_to[d.to_address] = now
                if got:
                    claimed.append(got)
        results = await asyncio.gather(*(self._send(g) for g in claimed))
        sent: list[Delivery] = []
        async with self.db.session() as s, s.begin():
            receipts: list[tuple[Delivery, str, str]] = []
            for group, outcomes in zip(claimed, results, strict=True):
                for d, outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, SendReceipt):
                        receipts.append((d, outcome.provider, outcome.provider_id))
                    else:
                        await self._record_failure(s, d, outcome, now)
            sent = await deliveries.mark_sent(s, receipts, now, self.token)
            await self._after_sent(s, sent, now)
        if sent:
            # After the commit, so a report parked meanwhile is seen by one side or the other.
            async with self.db.session() as s, s.begin():
                moved = {d.id for d in sent}
                await apply_parked_reports(s, [(d.id or 0, p, pid) for d, p, pid in receipts if d.id in moved], now)
        if claimed:
            self.on_change()
            async with self._recorded_cond:
                self.recorded += len(sent)
                self._recorded_cond.notify_all()
        return len(due)

    def _mine(self, q: Any) -> Any:
        """`q` narrowed to the purposes this sender owns."""
        if self.purposes is not None:
            q = q.where(col(Delivery.purpose).in_([p.value for p in self.purposes]))
        if self.exclude_purposes:
            q = q.where(col(Delivery.purpose).not_in([p.value for p in self.exclude_purposes]))
        return q

    def _spacing_ok(self, d: Delivery, now: datetime, min_gap: timedelta) -> bool:
        last = self._last_to.get(d.to_address)
        return last is None or now - last >= min_gap or d.purpose == Purpose.REPLY_HELP

    def _group(self, rows: list[Delivery]) -> list[list[Delivery]]:
        """Same text on a batch-capable channel goes out in provider batches; the rest singly.
        One recipient appears once per group (a batch is one request)."""
        out: list[list[Delivery]] = []
        batches: dict[tuple[str, str], tuple[list[Delivery], set[str]]] = {}
        for d in rows:
            channel = self.channels.get(d.channel)
            if channel is None or channel.max_batch <= 1:
                out.append([d])
                continue
            group, recipients = batches.setdefault((d.channel, d.body), ([], set()))
            if d.to_address in recipients:
                out.append([d])
                continue
            group.append(d)
            recipients.add(d.to_address)
            if len(group) >= channel.max_batch:
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
                    return list(await channel.send_many([message_of(d) for d in group], group[0].send_context or ""))
                return [await channel.send(message_of(group[0]))]
            except (TransientSendError, PermanentSendError) as e:
                return [e for _ in group]
            except Exception as e:  # an SDK bug or network oddity: treat as transient
                return [TransientSendError(f"{type(e).__name__}: {e}") for _ in group]

    async def _record_failure(self, s: AsyncSession, d: Delivery, outcome: Exception, now: datetime) -> None:
        if isinstance(outcome, PermanentSendError) or d.attempts >= self.cfg.max_attempts:
            await deliveries.mark_failed(s, d, str(outcome), now, token=self.token)
        else:
            retry_after = outcome.retry_after if isinstance(outcome, TransientSendError) else None
            await deliveries.retry_later(s, d, str(outcome), now + self.backoff(d.attempts, retry_after), now,
                                         token=self.token)

    async def _after_sent(self, s: AsyncSession, sent: list[Delivery], now: datetime) -> None:
        if self.after_sent is not None:
            await self.after_sent(s, [d for d in sent if d.purpose == Purpose.WARNING and d.call_id], now)

    # -- in doubt --------------------------------------------------------------------------

    async def recover_in_doubt(self, everything: bool) -> int:
        """Resolve rows left in `sending` by a crashed sender: take them over, look each up
        with its provider, and record it sent (found) or put it back to pending (not found).
        `everything` at start-up of a single-instance deployment; otherwise only rows whose
        lease has run out. Returns how many rows were looked at."""
        now = self.clock.now()
        async with self.db.read() as s:
            q = self._mine(select(Delivery).where(Delivery.state == DeliveryState.SENDING))
            if not everything:
                q = q.where(col(Delivery.lease_until) <= now)
            rows = (await s.exec(q)).all()
        # Providers compare against their own (wall) clocks, not the engine's clock.
        since = utcnow() - timedelta(days=1)
        lease = now + timedelta(seconds=self.cfg.lease_seconds)
        handled = 0
        for d in rows:
            async with self.db.session() as s, s.begin():
                mine = await deliveries.take_over(s, d, now=now, lease_until=lease, token=self.token,
                                                  ignore_lease=everything)
            if not mine:
                continue  # another instance took it over first
            handled += 1
            channel = self.channels.get(d.channel)
            receipt: SendReceipt | None = None
            if channel is not None:
                try:
                    receipt = await channel.find_sent(message_of(d, d.send_context), since=since)
                except Exception as e:  # provider unreachable: keep it in doubt, look again later
                    log.warning("in-doubt lookup failed", delivery=d.id, error=str(e))
                    async with self.db.session() as s, s.begin():
                        await deliveries.extend_lease(s, d, now + self.backoff(1, None), self.token)
                    continue
            async with self.db.session() as s, s.begin():
                if receipt is not None:
                    moved = await deliveries.mark_sent(s, [(d, receipt.provider, receipt.provider_id)], now,
                                                       self.token, event="delivery_reconciled")
                    await self._after_sent(s, moved, now)
                    if moved:
                        self.on_change()
                else:
                    await deliveries.release(s, d, now, self.token)
            if receipt is not None:
                async with self.db.session() as s, s.begin():
                    await apply_parked_reports(s, [(d.id or 0, receipt.provider, receipt.provider_id)], now)
        return handled

    # -- for tests and drills --------------------------------------------------------------

    async def wait_records_after(self, seen: int) -> None:
        """Until more than `seen` sends have been recorded."""
        await self.wait_recorded(seen + 1)

    async def wait_recorded(self, n: int) -> None:
        """Until at least `n` sends have been recorded as sent (for tests and drills)."""
        async with self._recorded_cond:
            await self._recorded_cond.wait_for(lambda: self.recorded >= n)
