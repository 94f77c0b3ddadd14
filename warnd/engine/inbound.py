"""What providers tell us: replies (应) and delivery reports.

A reply from a phone confirms every open call for which that phone was sent the warning or
an escalation about it (the official, their deputy, their superior). A short code narrows
it to one call. Anything else earns one polite instruction, at most once per interval.
Each inbound message is stored once (dedupe key); a duplicate webhook changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import DeliveryReport, InboundReply
from warnd.clock import Clock
from warnd.config import DeliveryCfg
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery, Inbound, Person
from warnd.domain import CallState, ConfirmVia, Purpose
from warnd.engine import events
from warnd.engine.calls import CallService
from warnd.replies import Reply, parse_reply
from warnd.templates import Templates

log = structlog.get_logger("warnd.inbound")


class InboundHandler:
    def __init__(self, db: Database, clock: Clock, calls: CallService, templates: Templates,
                 cfg: DeliveryCfg, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.calls, self.templates, self.cfg = db, clock, calls, templates, cfg
        self.on_change = on_change

    async def on_reply(self, reply: InboundReply) -> None:
        """One transaction per reply: record it, confirm what it confirms (or queue the
        instruction), and note the outcome. A duplicate webhook hits the unique dedupe key
        and the whole transaction rolls back, changing nothing."""
        parsed = parse_reply(reply.text)
        try:
            async with self.db.session() as s, s.begin():
                now = self.clock.now()
                row = Inbound(provider=reply.provider, dedupe_key=reply.dedupe_key,
                              from_address=reply.from_address, text=reply.text[:2000], received_at=now)
                s.add(row)
                await s.flush()
                row.outcome = await self._apply(s, reply, parsed, row.id or 0, now)
        except IntegrityError:
            log.info("duplicate inbound ignored", key=reply.dedupe_key)
            return
        self.on_change()

    async def _apply(self, s: AsyncSession, reply: InboundReply, parsed: Reply, inbound_id: int,
                     now: datetime) -> str:
        people = (await s.exec(select(Person).where(Person.phone == reply.from_address))).all()
        if not people:
            events.record(s, now, "reply_unknown_sender", from_address=reply.from_address)
            return "unknown sender"
        ids = [p.id for p in people]
        own = select(Call.id).where(col(Call.person_id).in_(ids))
        via_escalation = select(Delivery.call_id).where(col(Delivery.person_id).in_(ids),
                                                        col(Delivery.call_id).is_not(None))
        targets = list((await s.exec(select(Call).where(
            col(Call.state).in_([CallState.OPEN, CallState.DUTY_ROOM]),
            col(Call.id).in_(own.union(via_escalation).scalar_subquery()),
        ))).all())
        if parsed.short_code:
            targets = [c for c in targets if c.short_code == parsed.short_code]
        if parsed.confirm and targets:
            confirmed = 0
            for call in targets:
                confirmed += await self.calls.confirm_in(s, call, ConfirmVia.SMS_REPLY, people[0].id, None, now)
            return f"confirmed {confirmed}"
        await self._help(s, people[0], inbound_id, now)
        return "not understood" if not parsed.confirm else "no open call"

    async def _help(self, s: AsyncSession, person: Person, inbound_id: int, now: datetime) -> None:
        since = now - timedelta(seconds=self.cfg.reply_help_interval_seconds)
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
        self.on_change()
