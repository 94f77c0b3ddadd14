"""What providers tell us: replies (应) and delivery reports.

A reply from a phone confirms every open call for which that phone was sent the warning or
an escalation about it (the official, their deputy, their superior). A short code narrows
it to one call. Anything else earns one polite instruction, at most once per interval.
Each inbound message is stored once (dedupe key); a duplicate webhook changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from channels.base import DeliveryReport, InboundAction, InboundReply
from warnd.clock import Clock
from warnd.config import DeliveryCfg
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery, Inbound, Person
from warnd.domain import CallState, ConfirmVia, Purpose
from warnd.engine import events
from warnd.engine.calls import CallService
from warnd.engine.failover import after_failed_delivery
from warnd.replies import parse_reply
from warnd.templates import Templates

log = structlog.get_logger("warnd.inbound")

ACTION_LOOKUPS, ACTION_LOOKUP_PAUSE = 10, 0.2  # seconds, real time


class InboundHandler:
    def __init__(self, db: Database, clock: Clock, calls: CallService, templates: Templates,
                 cfg: DeliveryCfg, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.calls, self.templates, self.cfg = db, clock, calls, templates, cfg
        self.on_change = on_change

    async def on_reply(self, reply: InboundReply) -> None:
        now = self.clock.now()
        try:
            async with self.db.session() as s, s.begin():
                row = Inbound(provider=reply.provider, dedupe_key=reply.dedupe_key,
                              from_address=reply.from_address, text=reply.text[:2000], received_at=now)
                s.add(row)
                await s.flush()
                inbound_id = row.id
        except IntegrityError:
            log.info("duplicate inbound ignored", key=reply.dedupe_key)
            return
        outcome = await self._apply(reply, inbound_id or 0)
        async with self.db.session() as s, s.begin():
            row2 = await s.get(Inbound, inbound_id)
            if row2 is not None:
                row2.outcome = outcome
        self.on_change()

    async def _apply(self, reply: InboundReply, inbound_id: int) -> str:
        now = self.clock.now()
        async with self.db.session() as s:
            people = (await s.exec(select(Person).where(Person.phone == reply.from_address))).all()
        if not people:
            # Outside the read session: SQLite allows one writer, a nested one would deadlock.
            async with self.db.session() as s2, s2.begin():
                events.record(s2, now, "reply_unknown_sender", from_address=reply.from_address)
            return "unknown sender"
        async with self.db.session() as s:
            ids = [p.id for p in people]
            own = select(Call.id).where(col(Call.person_id).in_(ids))
            via_escalation = select(Delivery.call_id).where(col(Delivery.person_id).in_(ids),
                                                            col(Delivery.call_id).is_not(None))
            open_calls = (await s.exec(select(Call).where(
                col(Call.state).in_([CallState.OPEN, CallState.DUTY_ROOM]),
                col(Call.id).in_(own.union(via_escalation).scalar_subquery()),
            ))).all()
        parsed = parse_reply(reply.text)
        targets = list(open_calls)
        if parsed.short_code:
            targets = [c for c in targets if c.short_code == parsed.short_code]
        if parsed.confirm and targets:
            confirmed = 0
            for call in targets:
                assert call.id is not None
                res = await self.calls.confirm(call.id, ConfirmVia.SMS_REPLY, by_person_id=people[0].id)
                confirmed += res.confirmed
            return f"confirmed {confirmed}"
        await self._help(people[0], inbound_id)
        return "not understood" if not parsed.confirm else "no open call"

    async def _help(self, person: Person, inbound_id: int) -> None:
        now = self.clock.now()
        since = now - timedelta(seconds=self.cfg.reply_help_interval_seconds)
        async with self.db.session() as s, s.begin():
            recent = (await s.exec(select(Delivery.id).where(
                Delivery.person_id == person.id, Delivery.purpose == Purpose.REPLY_HELP,
                col(Delivery.created_at) >= since).limit(1))).first()
            if recent is not None:
                return  # rate limit: one instruction per interval
            s.add(Delivery(idempotency_key=f"help:{inbound_id}", person_id=person.id or 0, channel="sms",
                           purpose=Purpose.REPLY_HELP, to_address=person.phone,
                           body=self.templates.render("reply_help"), next_attempt_at=now, created_at=now))

    async def on_report(self, report: DeliveryReport) -> None:
        if not report.final:
            return
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            d = (await s.exec(select(Delivery).where(Delivery.provider == report.provider,
                                                     Delivery.provider_id == report.provider_id))).first()
            if d is None or d.state in ("delivered", "failed"):
                return  # unknown or already final: a duplicate report changes nothing
            if report.delivered:
                d.state, d.delivered_at = "delivered", now
            else:
                d.state, d.last_error = "failed", report.error or "undelivered"
            events.record(s, now, "delivery_delivered" if report.delivered else "delivery_undelivered",
                          alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                          person_id=d.person_id, error=report.error)
            if not report.delivered:
                await s.flush()
                await after_failed_delivery(s, d, now)  # every channel of the rung failed: escalate now
        self.on_change()

    # -- interactive channels (voice key press, WeCom button) -------------------------------

    async def _delivery(self, provider: str, provider_id: str) -> Delivery | None:
        # A fast callee can answer before the send's receipt is recorded: look a few times.
        for _ in range(ACTION_LOOKUPS):
            async with self.db.session() as s:
                d = (await s.exec(select(Delivery).where(Delivery.provider == provider,
                                                         Delivery.provider_id == provider_id))).first()
            if d is not None:
                return d
            await asyncio.sleep(ACTION_LOOKUP_PAUSE)
        return None

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
            if outcome in ("unknown delivery", "not the recipient"):
                events.record(s, now, "action_rejected", provider=action.provider, provider_id=action.provider_id,
                              from_address=action.from_address, outcome=outcome)
        self.on_change()
        return outcome

    async def message_text(self, provider: str, provider_id: str) -> str | None:
        d = await self._delivery(provider, provider_id)
        return d.body if d is not None else None
