"""What providers tell us: replies (应) and delivery reports.

A reply from a phone confirms every open call for which that phone was sent the warning or
an escalation about it (the official, their deputy, their superior). A short code narrows
it to one call. Anything else earns one polite instruction, at most once per interval.
Each inbound message is stored once (dedupe key); a duplicate webhook changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import DeliveryReport, InboundAction, InboundReply
from warnd.clock import Clock
from warnd.config import DeliveryCfg
from warnd.core.domain import CallState, ConfirmVia, PersonView, Purpose
from warnd.core.replies import parse_reply
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery, Inbound, Person
from warnd.engine import calls, deliveries, events
from warnd.engine.calls import Calls
from warnd.engine.reports import PARKED, apply_parked_reports, apply_report, report_provider


class SendLog(Protocol):
    """How many sends the outbox has recorded, and a wait for more (warnd.engine.outbox.Outbox)."""

    recorded: int

    async def wait_records_after(self, seen: int) -> None: ...

class Subscriptions(Protocol):
    """Public lists' opt-out by reply (warnd.public.optouts.SmsOptOuts): the outcome when the
    reply was a subscription choice of a listed number (handled in `s`), else None."""

    async def on_reply(self, s: AsyncSession, reply: InboundReply, now: datetime) -> str | None: ...


log = structlog.get_logger("warnd.inbound")

OPEN_STATES = (CallState.OPEN.value, CallState.DUTY_ROOM.value)
ACTION_WAIT = 2.0  # seconds, real time: how long a press may wait for its send to be recorded


MAX_BATCH = 500


class InboundHandler:
    """Replies are group-committed: each webhook queues its reply and waits; one task takes
    everything queued, handles it in ONE transaction and answers every waiting webhook
    after the commit. The provider still hears 200 only once the reply is durable, and a
    storm of thousands of 收到 costs a handful of transactions instead of thousands."""

    def __init__(self, db: Database, clock: Clock, calls_: Calls, templates: Templates, cfg: DeliveryCfg,
                 sends: SendLog, on_change: Callable[[], None] = lambda: None,
                 subscriptions: Subscriptions | None = None):
        self.db, self.clock, self.calls, self.templates, self.cfg = db, clock, calls_, templates, cfg
        self.sends, self.on_change = sends, on_change
        self.subscriptions = subscriptions
        self._queue: list[tuple[InboundReply, asyncio.Future[str]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def on_reply(self, reply: InboundReply) -> None:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((reply, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="inbound-replies")
        await fut  # raises if the batch failed: the webhook answers 5xx and the provider retries

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                outcomes = await self._handle(batch)
            except Exception as e:
                log.exception("reply batch failed", size=len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if not fut.done():
                    fut.set_result(outcome)
            self.on_change()

    async def _handle(self, batch: list[tuple[InboundReply, asyncio.Future[str]]]) -> list[str]:
        async with self.db.session() as s, s.begin():
            now = self.clock.now()
            keys = [r.dedupe_key for r, _ in batch]
            seen = set((await s.exec(select(Inbound.dedupe_key).where(col(Inbound.dedupe_key).in_(keys)))).all())
            phones = {r.from_address for r, _ in batch}
            people = (await s.exec(select(Person).where(col(Person.phone).in_(phones)))).all()
            by_phone: dict[str, list[Person]] = {}
            for p in people:
                by_phone.setdefault(p.phone, []).append(p)
            calls_of = await self._open_calls(s, [p.id for p in people if p.id is not None])
            helped = await self._recently_helped(s, [p.id for p in people if p.id is not None], now)
            outcomes: list[str] = []
            rows: list[dict[str, Any]] = []
            confirmations: list[tuple[Call, int | None]] = []
            for reply, _ in batch:
                if reply.dedupe_key in seen:
                    outcomes.append("duplicate")  # a retried webhook changes nothing
                    continue
                seen.add(reply.dedupe_key)
                choice = (await self.subscriptions.on_reply(s, reply, now)
                          if self.subscriptions is not None else None)
                outcome = choice if choice is not None else await self._apply(s, reply, by_phone.get(reply.from_address, []), calls_of, helped,
                                            now, confirmations)
                outcomes.append(outcome)
                rows.append(dict(provider=reply.provider, dedupe_key=reply.dedupe_key,
                                 from_address=reply.from_address, text=reply.text[:2000],
                                 received_at=now, outcome=outcome))
            # The first reply for a call confirms it; a later one in the same batch is a no-op.
            await calls.confirm_many(s, confirmations, ConfirmVia.SMS_REPLY, now)
            if rows:
                await (await s.connection()).execute(insert(Inbound), rows)
        return outcomes

    async def _open_calls(self, s: AsyncSession, person_ids: list[int]) -> dict[int, list[Call]]:
        """Open calls each person may confirm: their own, and those they were sent an
        escalation about (as deputy or superior)."""
        if not person_ids:
            return {}
        own = (await s.exec(select(Call).where(col(Call.person_id).in_(person_ids),
                                               col(Call.state).in_(OPEN_STATES)))).all()
        escalated = (await s.exec(select(Delivery.person_id, Call).join(
            Call, col(Call.id) == col(Delivery.call_id)).where(
            col(Delivery.person_id).in_(person_ids), col(Call.state).in_(OPEN_STATES)))).all()
        out: dict[int, dict[int, Call]] = {}
        for call in own:
            out.setdefault(call.person_id, {})[call.id or 0] = call
        for pid, call in escalated:
            out.setdefault(pid, {})[call.id or 0] = call
        return {pid: list(calls.values()) for pid, calls in out.items()}

    async def _recently_helped(self, s: AsyncSession, person_ids: list[int], now: datetime) -> set[int]:
        since = now - timedelta(seconds=self.cfg.reply_help_interval_seconds)
        return set((await s.exec(select(Delivery.person_id).where(
            col(Delivery.person_id).in_(person_ids), Delivery.purpose == Purpose.REPLY_HELP,
            col(Delivery.created_at) >= since))).all())

    async def _apply(self, s: AsyncSession, reply: InboundReply, people: list[Person],
                     calls_of: dict[int, list[Call]], helped: set[int], now: datetime,
                     confirmations: list[tuple[Call, int | None]]) -> str:
        if not people:
            events.record(s, now, "reply_unknown_sender", from_address=reply.from_address)
            return "unknown sender"
        parsed = parse_reply(reply.text)
        targets = {c.id: c for p in people for c in calls_of.get(p.id or 0, []) if c.state in OPEN_STATES}
        chosen = [c for c in targets.values() if not parsed.short_code or c.short_code == parsed.short_code]
        if parsed.confirm and chosen:
            confirmations.extend((call, people[0].id) for call in chosen)
            return f"confirmed {len(chosen)}"
        person = people[0]
        if person.id is not None and person.id not in helped:
            helped.add(person.id)  # rate limit: one instruction per interval
            view = PersonView(id=person.id, name=person.name, phone=person.phone, role=person.role,
                              region_code=person.region_code)
            await deliveries.insert_rows(s, [deliveries.new_row(
                None, None, None, view, "sms", Purpose.REPLY_HELP, None, self.templates.render("reply_help"), now,
                key=f"help:{reply.provider}:{reply.dedupe_key}", to_address=reply.from_address)])
        return "not understood" if not parsed.confirm else "no open call"

    async def on_report(self, report: DeliveryReport) -> None:
        await self.on_reports([report])

    async def on_reports(self, reports: Sequence[DeliveryReport]) -> None:
        """Final reports applied in bulk: one lookup and one transaction for a provider's push
        (a public fan-out's reports come hundreds at a time)."""
        final = [r for r in reports if r.final]
        if not final:
            return
        now = self.clock.now()
        parked: list[DeliveryReport] = []
        async with self.db.session() as s, s.begin():
            found = await deliveries.by_provider_ids(s, [(r.provider, r.provider_id) for r in final])
            for report in final:
                d = found.get((report.provider, report.provider_id))
                if d is None:
                    parked.append(report)
                else:
                    await apply_report(s, d, report.delivered, report.error, now)
            if parked:
                # A report overtook the send's receipt (a fast provider): park it; the outbox
                # applies it when it records the send. A retried report parks once (dedupe key).
                keys = [r.dedupe_key for r in parked]
                exists = set((await s.exec(select(Inbound.dedupe_key).where(
                    col(Inbound.dedupe_key).in_(keys)))).all())
                for report in parked:
                    if report.dedupe_key in exists:
                        continue
                    exists.add(report.dedupe_key)
                    s.add(Inbound(provider=report_provider(report.provider), dedupe_key=report.dedupe_key,
                                  from_address=report.provider_id, received_at=now, outcome=PARKED,
                                  text="delivered" if report.delivered else f"failed:{report.error or 'undelivered'}"))
        if parked:
            # Parked and committed: if the sends were recorded meanwhile, apply them now.
            async with self.db.session() as s, s.begin():
                found = await deliveries.by_provider_ids(s, [(r.provider, r.provider_id) for r in parked])
                await apply_parked_reports(s, [(d.id, p, pid) for (p, pid), d in found.items() if d.id is not None],
                                           now)
        self.on_change()

    # -- interactive channels (voice key press, WeCom button) -------------------------------

    async def _delivery(self, provider: str, provider_id: str) -> Delivery | None:
        """The delivery a key press or button tap answers. A fast callee can answer before
        the outbox has recorded the send: then wait for the outbox's next records (not a
        timer), up to ACTION_WAIT seconds of real time."""
        deadline = asyncio.get_running_loop().time() + ACTION_WAIT
        while True:
            seen = self.sends.recorded
            async with self.db.read() as s:
                d = await deliveries.by_provider_id(s, provider, provider_id)
            remaining = deadline - asyncio.get_running_loop().time()
            if d is not None or remaining <= 0:
                return d
            try:
                async with asyncio.timeout(remaining):
                    await self.sends.wait_records_after(seen)
            except TimeoutError:
                pass

    async def on_action(self, action: InboundAction) -> str:
        """A key pressed / a button tapped: confirm the call of the delivery it answers, as
        the delivery's recipient (a deputy confirms for the official)."""
        now = self.clock.now()
        try:
            async with self.db.session() as s, s.begin():
                row = Inbound(provider=action.provider, dedupe_key=action.dedupe_key[:128],
                              from_address=action.from_address, text=f"{action.via}:confirm", received_at=now)
                s.add(row)
                await s.flush()
                inbound_id = row.id
        except IntegrityError:
            log.info("duplicate action ignored", key=action.dedupe_key)
            return "duplicate"
        d = await self._delivery(action.provider, action.provider_id)
        if d is None:
            outcome = "unknown delivery"
        elif d.to_address != action.from_address:
            outcome = "not the recipient"
        elif d.call_id is None:
            outcome = "no call"
        else:
            res = await self.calls.confirm(d.call_id, ConfirmVia(action.via), by_person_id=d.person_id)
            outcome = "confirmed" if res.confirmed else f"already {res.state}"
        async with self.db.session() as s, s.begin():
            row2 = await s.get(Inbound, inbound_id)
            if row2 is not None:
                row2.outcome = outcome
            if outcome not in ("confirmed", "already confirmed"):  # every press that did not confirm says why
                events.record(s, now, "action_rejected", provider=action.provider, provider_id=action.provider_id,
                              from_address=action.from_address, outcome=outcome)
        self.on_change()
        return outcome

    async def message_text(self, provider: str, provider_id: str) -> str | None:
        d = await self._delivery(provider, provider_id)
        return d.body if d is not None else None
