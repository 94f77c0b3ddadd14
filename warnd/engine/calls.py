"""叫应 transitions applied to the database.

Each transition reads the call, asks the pure state machine (warnd.callstate) what to do,
and writes the result with a compare-and-swap on the call's fence. A stale timer, a second
instance or a duplicate webhook that read an older fence updates zero rows and does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import bindparam, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.callstate import CallSnapshot, on_confirm, on_deadline
from warnd.clock import Clock
from warnd.confirm.links import LinkIssuer
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery
from warnd.domain import Action, CallState, ConfirmVia, Purpose
from warnd.engine import events
from warnd.engine.ingest import Ingestor, delivery_row
from warnd.engine.messages import MessageContext, render
from warnd.engine.roster import RosterCache
from warnd.planner import escalation_recipients
from warnd.policy import Policy
from warnd.roles import Roles
from warnd.templates import Templates

ERROR_BACKOFF_SECONDS = 1.0

log = structlog.get_logger("warnd.calls")

RUNG_TEMPLATE = {Action.RESEND: "resend", Action.DEPUTY: "deputy", Action.SUPERIOR: "superior"}


def snapshot(call: Call) -> CallSnapshot:
    return CallSnapshot(CallState(call.state), call.level, call.fence, call.deadline)


async def cas(s: AsyncSession, call: Call, new: CallSnapshot, **extra: object) -> bool:
    """Write `new` only if nobody moved the call since we read it."""
    res = await s.exec(
        update(Call).where(col(Call.id) == call.id, col(Call.fence) == call.fence).values(
            state=new.state.value, level=new.level, fence=new.fence, deadline=new.deadline, **extra)
    )
    return bool(res.rowcount == 1)


@dataclass
class ConfirmOutcome:
    call_id: int
    confirmed: bool  # False: already confirmed/cancelled (duplicate), nothing changed
    state: str


class CallService:
    def __init__(self, db: Database, clock: Clock, policy: Policy, templates: Templates, roles: Roles,
                 roster: RosterCache, ingestor: Ingestor, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.policy, self.templates, self.roles = db, clock, policy, templates, roles
        self.roster, self.ingestor, self.on_change = roster, ingestor, on_change
        self.links: LinkIssuer | None = None  # signed confirm links for templates using {link}

    async def confirm(self, call_id: int, via: ConfirmVia, by_person_id: int | None = None,
                      note: str | None = None) -> ConfirmOutcome:
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            call = await s.get(Call, call_id)
            if call is None:
                raise KeyError(call_id)
            t = on_confirm(snapshot(call), now)
            if not t.changed or not await cas(s, call, t.call, confirmed_at=now, confirmed_via=via.value,
                                               confirmed_by_id=by_person_id, note=note):
                return ConfirmOutcome(call_id, False, call.state)
            # Escalation messages not yet sent are moot now.
            await s.exec(update(Delivery).where(
                col(Delivery.call_id) == call_id, col(Delivery.state) == "pending",
                col(Delivery.purpose) == Purpose.ESCALATION).values(state="cancelled"))
            events.record(s, now, "call_confirmed", alert_id=call.alert_id, call_id=call_id,
                          person_id=call.person_id, via=via.value, by=by_person_id, level=call.level,
                          late=call.state == CallState.DUTY_ROOM, note=note)
        return ConfirmOutcome(call_id, True, CallState.CONFIRMED)

    async def fire_due(self, limit: int = 200) -> int:
        """Fire every deadline that has passed. Returns how many rungs fired."""
        now = self.clock.now()
        async with self.db.session() as s:
            due = (await s.exec(select(Call.id, Call.fence).where(
                Call.state == CallState.OPEN, col(Call.deadline) <= now).order_by(
                col(Call.deadline), col(Call.id)).limit(limit))).all()
        fired = 0
        for call_id, fence in due:
            if call_id is not None:
                fired += await self._fire(call_id, fence, now)
        if fired:
            self.on_change()
        return fired

    async def next_deadline(self) -> datetime | None:
        async with self.db.session() as s:
            return (await s.exec(select(Call.deadline).where(Call.state == CallState.OPEN,
                                 col(Call.deadline).is_not(None)).order_by(col(Call.deadline)).limit(1))).first()

    async def _fire(self, call_id: int, fence: int, now: datetime) -> int:
        roster = await self.roster.get()
        async with self.db.session() as s, s.begin():
            call = await s.get(Call, call_id)
            if call is None:
                return 0
            ladder = self.policy.ladders[call.ladder]
            t = on_deadline(snapshot(call), fence, now, ladder)
            if not t.changed or t.fired is None:
                return 0
            rung = t.fired
            person = roster.by_id.get(call.person_id)
            recipients = (escalation_recipients(rung.action, person, roster.index, roster.regions, self.roles)
                          if person is not None and rung.action != Action.DUTY_ROOM else ())
            new = t.call
            if rung.action != Action.DUTY_ROOM and not recipients and new.deadline is not None:
                # Nobody to escalate to on this rung (no deputy on file): go straight on.
                new = type(new)(new.state, new.level, new.fence, min(new.deadline, now))
            if not await cas(s, call, new):
                return 0
            alert = await s.get(Alert, call.alert_id)
            assert alert is not None and alert.id is not None
            ctx = MessageContext.of(alert, self.templates)
            region = roster.regions.get(call.region_code)
            channels = rung.channels or tuple(call.channels)
            for r in recipients:
                for channel in channels:
                    template = self.templates.pick(RUNG_TEMPLATE[rung.action], channel)
                    link = ""
                    if self.links is not None and self.templates.uses(template, "link"):
                        link = await self.links.issue(s, call_id=call_id, alert_id=alert.id, person_id=r.id,
                                                      expires_at=self.links.expiry(alert, now), now=now)
                    body = render(ctx, template, r, roles=self.roles, call=call, official=person,
                                  region_name=region.name if region else call.region_code, link=link)
                    await (await s.connection()).execute(insert(Delivery).values(delivery_row(
                        alert.id, call.id, call.step, r, channel, Purpose.ESCALATION, new.level, body, now)))
            events.record(s, now, "call_escalated" if rung.action != Action.DUTY_ROOM else "call_to_duty_room",
                          alert_id=call.alert_id, call_id=call.id, person_id=call.person_id,
                          level=new.level, action=rung.action.value, recipients=[r.id for r in recipients],
                          fence=new.fence)
            if rung.action != Action.DUTY_ROOM and not recipients:
                events.record(s, now, "escalation_gap", alert_id=call.alert_id, call_id=call.id,
                              action=rung.action.value)
        return 1

    @staticmethod
    async def restart_windows(s: AsyncSession, sent: list[Delivery], at: datetime) -> None:
        """The confirm window counts from when the warning actually left, not from when it
        was planned: a backed-up gateway must not eat the official's time, and the send
        grace added at planning is replaced by the real window. Only calls still open at
        level 0 move (no rung fired, not confirmed), so this never races an escalation."""
        ids = sorted({d.call_id for d in sent if d.call_id is not None})
        if not ids:
            return
        c = Call.__table__  # type: ignore[attr-defined]
        conn = await s.connection()
        windows = (await conn.execute(select(c.c.id, c.c.window_seconds).where(c.c.id.in_(ids)))).all()
        await conn.execute(update(c).where(c.c.id == bindparam("cid"), c.c.level == 0,
                                           c.c.state == CallState.OPEN.value).values(deadline=bindparam("dl")),
                           [{"cid": cid, "dl": at + timedelta(seconds=w)} for cid, w in windows])


class EscalationWorker:
    """Sleeps until the earliest deadline in the database (or until woken), fires what is due.
    Deadlines live only in the database, so a restart fires every overdue one exactly once."""

    def __init__(self, calls: CallService, clock: Clock):
        self.calls, self.clock = calls, clock
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                while await self.calls.fire_due():
                    pass
                nxt = await self.calls.next_deadline()
            except Exception:
                # A database hiccup: back off in real time (clock time may be frozen in
                # tests or racing in drills), then try the whole pass again.
                log.exception("escalation pass failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            await self.clock.wait_until(nxt, self.wake)
