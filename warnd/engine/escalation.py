"""Escalation: fires due confirm deadlines (resend → deputy → superior → duty room).

Deadlines live only in the database, so a restart fires every overdue one exactly once. The
rung is decided by the pure state machine (warnd.core.callstate) and its recipients by the
pure planner; the transition is applied by warnd.engine.calls (fenced, token-stamped), and
only rungs this pass really moved write their messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.clock import Clock
from warnd.core.callstate import CallSnapshot, on_deadline
from warnd.core.domain import Action, CallState, PersonView, Purpose
from warnd.core.planner import escalation_recipients
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call
from warnd.engine import calls, deliveries, events
from warnd.engine.calls import Calls, Move, snapshot
from warnd.engine.messages import Composer, Links, address_for
from warnd.engine.module import ModuleBase
from warnd.engine.notices import notify_duty_room
from warnd.engine.roster import RosterCache, RosterSnapshot

log = structlog.get_logger("warnd.escalation")

RUNG_TEMPLATE = {Action.RESEND: "resend", Action.DEPUTY: "deputy", Action.SUPERIOR: "superior"}


@dataclass(frozen=True)
class _Rung:
    """A rung the state machine says should fire, before the compare-and-swap."""

    call: Call
    person: PersonView | None
    action: Action
    channels: tuple[str, ...]
    recipients: tuple[PersonView, ...]
    new: CallSnapshot


class Escalation(ModuleBase):
    name = "escalation"
    poll_seconds = 5.0  # deadlines written by another instance send no wake

    def __init__(self, db: Database, clock: Clock, calls_: Calls, policy: Policy, templates: Templates,
                 roles: Roles, roster: RosterCache, links: Links | None = None,
                 on_change: Callable[[], None] = lambda: None):
        super().__init__()
        self.db, self.clock, self.calls, self.policy = db, clock, calls_, policy
        self.templates, self.roles, self.roster, self.links, self.on_change = templates, roles, roster, links, on_change

    async def step(self) -> bool:
        return await self.fire_due() > 0

    async def next_due(self) -> datetime | None:
        return await self.calls.next_deadline()

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every deadline that has passed, a batch per transaction. Returns how many
        rungs this pass fired (a call another instance or a confirmation moved first is left
        alone, and only rungs that really fired send)."""
        now = self.clock.now()
        async with self.db.read() as s:
            due = (await s.exec(select(Call.id, Call.fence).where(
                Call.state == CallState.OPEN, col(Call.deadline) <= now).order_by(
                col(Call.deadline), col(Call.id)).limit(limit))).all()
        if not due:
            return 0
        roster = await self.roster.get()  # before the transaction: SQLite has one writer
        async with self.db.session() as s, s.begin():
            # Claimed: on PostgreSQL the rows are locked for this transaction and rows another
            # instance is escalating are skipped, never waited for (no pass blocks or
            # deadlocks on another's); SQLite's single writer serialises passes anyway.
            ids = [cid for cid, _ in due if cid is not None]
            rows = {c.id: c for c in (await s.exec(select(Call).where(
                col(Call.id).in_(ids), Call.state == CallState.OPEN, col(Call.deadline) <= now).order_by(
                col(Call.id)).with_for_update(skip_locked=True))).all()}
            planned = [p for cid, fence in due if (call := rows.get(cid)) is not None
                       and (p := self._plan(call, fence, now, roster)) is not None]
            fired = await self._apply(s, planned, now, roster)
        if fired:
            self.on_change()
        return fired

    def _plan(self, call: Call, fence: int, now: datetime, roster: RosterSnapshot) -> _Rung | None:
        t = on_deadline(snapshot(call), fence, now, self.policy.ladders[call.ladder])
        if not t.changed or t.fired is None:
            return None
        rung = t.fired
        person = roster.by_id.get(call.person_id)
        recipients = (escalation_recipients(rung.action, person, roster.index, roster.regions, self.roles)
                      if person is not None and rung.action != Action.DUTY_ROOM else ())
        new = t.call
        if rung.action != Action.DUTY_ROOM and not recipients and new.deadline is not None:
            # Nobody to escalate to on this rung (no deputy on file): go straight on.
            new = CallSnapshot(new.state, new.level, new.fence, min(new.deadline, now))
        return _Rung(call, person, rung.action, rung.channels or tuple(call.channels), recipients, new)

    async def _apply(self, s: AsyncSession, planned: list[_Rung], now: datetime, roster: RosterSnapshot) -> int:
        if not planned:
            return 0
        moved = await calls.apply_moves(s, [Move(p.call, p.new) for p in planned])
        alerts = await _alerts(s, {p.call.alert_id for p in planned})
        composer = Composer(self.templates, self.roles, self.links, policy=self.policy, regions=roster.regions)
        rows: list[dict[str, Any]] = []
        fired = 0
        for p in planned:
            if p.call.id not in moved:
                continue  # somebody else moved this call first
            fired += 1
            call, alert = p.call, alerts[p.call.alert_id]
            region = roster.regions.get(call.region_code)
            for r in p.recipients:
                for channel in p.channels:
                    if not address_for(r, channel):
                        continue  # no address on this channel (e.g. no WeCom account)
                    body = composer.body(alert, RUNG_TEMPLATE[p.action], channel, r, now, call=call,
                                         official=p.person, region_name=region.name if region else call.region_code)
                    rows.append(deliveries.new_row(call.alert_id, call.id, call.step, r, channel, Purpose.ESCALATION,
                                                   p.new.level, body, now))
            events.record(s, now, "call_escalated" if p.action != Action.DUTY_ROOM else "call_to_duty_room",
                          alert_id=call.alert_id, call_id=call.id, person_id=call.person_id,
                          level=p.new.level, action=p.action.value, recipients=[r.id for r in p.recipients],
                          fence=p.new.fence)
            if p.action != Action.DUTY_ROOM and not p.recipients:
                events.record(s, now, "escalation_gap", alert_id=call.alert_id, call_id=call.id,
                              action=p.action.value)
            if p.action == Action.DUTY_ROOM and not roster.duty_officers():
                # Handed to a duty room with nobody in it: said, never quietly dropped.
                ctx = composer.context(alert)
                details = self.templates.render(
                    "notice_empty_duty_room", official=p.person.name if p.person else str(call.person_id),
                    role=self.roles.label(p.person.role) if p.person else "",
                    region=region.name if region else call.region_code, step=ctx.step, headline=ctx.headline)
                await notify_duty_room(s, roster, self.templates, now, kind="call_to_empty_duty_room",
                                       details=details, key=f"empty-duty-room:c{call.id}", alert_id=call.alert_id,
                                       drill_status=alert.status, call_id=call.id, person_id=call.person_id)
        await deliveries.insert_rows(s, rows)
        await composer.flush_links(s)
        return fired


async def _alerts(s: AsyncSession, alert_ids: set[int]) -> dict[int, Alert]:
    """The batch's alerts, loaded once and without the heavy columns (covered codes, raw
    XML) that a county-wide warning makes large."""
    rows = (await s.exec(select(Alert).where(col(Alert.id).in_(alert_ids)).options(
        defer(Alert.region_codes), defer(Alert.raw_xml), defer(Alert.description)))).all()  # type: ignore[arg-type]
    return {a.id: a for a in rows if a.id is not None}
