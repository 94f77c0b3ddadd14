"""叫应 transitions applied to the database.

Each transition reads the call, asks the pure state machine (warnd.core.callstate) what to do,
and writes the result with a compare-and-swap on the call's fence. A stale timer, a second
instance or a duplicate webhook that read an older fence updates zero rows and does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.clock import Clock
from warnd.confirm.links import LinkIssuer
from warnd.core.callstate import CallSnapshot, on_confirm, on_deadline
from warnd.core.domain import Action, CallState, ConfirmVia, PersonView, Purpose
from warnd.core.planner import escalation_recipients
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery
from warnd.engine import events
from warnd.engine.ingest import Ingestor, delivery_row
from warnd.engine.messages import MessageContext, address_for, render
from warnd.engine.roster import RosterCache, RosterSnapshot

ERROR_BACKOFF_SECONDS = 1.0

log = structlog.get_logger("warnd.calls")

RUNG_TEMPLATE = {Action.RESEND: "resend", Action.DEPUTY: "deputy", Action.SUPERIOR: "superior"}


def snapshot(call: Call) -> CallSnapshot:
    return CallSnapshot(CallState(call.state), call.level, call.fence, call.deadline)


@dataclass(frozen=True)
class _Rung:
    """A rung the state machine says should fire, before the compare-and-swap."""

    call: Call
    person: PersonView | None
    action: Action
    channels: tuple[str, ...]
    recipients: tuple[PersonView, ...]
    new: CallSnapshot


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
                      note: str | None = None, actor: str | None = None) -> ConfirmOutcome:
        """`actor`: the console/API user who recorded it (a phoned confirmation)."""
        async with self.db.session() as s, s.begin():
            call = await s.get(Call, call_id)
            if call is None:
                raise KeyError(call_id)
            changed = await self.confirm_in(s, call, via, by_person_id, note, self.clock.now(), actor)
            state = CallState.CONFIRMED.value if changed else call.state
        if changed:
            self.on_change()
        return ConfirmOutcome(call_id, changed, state)

    @staticmethod
    async def confirm_in(s: AsyncSession, call: Call, via: ConfirmVia, by_person_id: int | None,
                         note: str | None, now: datetime, actor: str | None = None) -> bool:
        """The one place a call becomes confirmed, inside the caller's transaction. False when
        it was already confirmed or cancelled, or moved under us (fence): nothing changes."""
        return call.id in await CallService.confirm_many(s, [(call, by_person_id)], via, now, note, actor)

    @staticmethod
    async def confirm_many(s: AsyncSession, items: list[tuple[Call, int | None]], via: ConfirmVia,
                           now: datetime, note: str | None = None, actor: str | None = None) -> set[int]:
        """Confirm many calls in three statements (a reply storm at the imminent step).
        Each row is a compare-and-swap on its fence; the ids that really moved are read
        back, so a row another instance changed first is simply not confirmed here."""
        wanted = {}
        for call, by in items:
            t = on_confirm(snapshot(call), now)
            if t.changed and call.id is not None and call.id not in wanted:
                wanted[call.id] = (call, by, t.call)
        if not wanted:
            return set()
        c = Call.__table__  # type: ignore[attr-defined]
        d = Delivery.__table__  # type: ignore[attr-defined]
        conn = await s.connection()
        await conn.execute(
            update(c).where(c.c.id == bindparam("cid"), c.c.fence == bindparam("old")).values(
                state=CallState.CONFIRMED.value, fence=bindparam("new"), deadline=None, confirmed_at=now,
                confirmed_via=via.value, confirmed_by_id=bindparam("by"), note=note),
            [{"cid": cid, "old": call.fence, "new": snap.fence, "by": by} for cid, (call, by, snap) in wanted.items()])
        rows = (await conn.execute(select(c.c.id, c.c.fence).where(
            c.c.id.in_(list(wanted)), c.c.state == CallState.CONFIRMED.value, c.c.confirmed_at == now))).all()
        moved = {cid for cid, fence in rows if wanted[cid][2].fence == fence}
        if moved:
            # Escalation messages not yet sent are moot now.
            await conn.execute(update(d).where(
                d.c.call_id.in_(moved), d.c.state == "pending", d.c.purpose == Purpose.ESCALATION.value,
            ).values(state="cancelled"))
        for cid in moved:
            call, by, _ = wanted[cid]
            events.record(s, now, "call_confirmed", alert_id=call.alert_id, call_id=cid,
                          person_id=call.person_id, via=via.value, by=by, level=call.level,
                          late=call.state == CallState.DUTY_ROOM, note=note,
                          actor=actor)
        return moved

    async def fire_due(self, limit: int = 500) -> int:
        """Fire every deadline that has passed, a batch per transaction. Returns how many
        rungs fired. The transitions are decided by the pure state machine, written as one
        compare-and-swap per call (executemany), and read back: a call another worker or a
        confirmation moved first is left alone, and only rungs that really fired send."""
        now = self.clock.now()
        async with self.db.read() as s:
            due = (await s.exec(select(Call.id, Call.fence).where(
                Call.state == CallState.OPEN, col(Call.deadline) <= now).order_by(
                col(Call.deadline), col(Call.id)).limit(limit))).all()
        if not due:
            return 0
        roster = await self.roster.get()  # before the transaction: SQLite has one writer
        async with self.db.session() as s, s.begin():
            ids = [cid for cid, _ in due if cid is not None]
            calls = {c.id: c for c in (await s.exec(select(Call).where(col(Call.id).in_(ids)))).all()}
            planned = [p for cid, fence in due if (call := calls.get(cid)) is not None
                       and (p := self._plan_rung(call, fence, now, roster)) is not None]
            fired = await self._apply_rungs(s, planned, now, roster)
        if fired:
            self.on_change()
        return fired

    def _plan_rung(self, call: Call, fence: int, now: datetime, roster: RosterSnapshot) -> _Rung | None:
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

    async def _apply_rungs(self, s: AsyncSession, planned: list[_Rung], now: datetime,
                           roster: RosterSnapshot) -> int:
        if not planned:
            return 0
        c = Call.__table__  # type: ignore[attr-defined]
        conn = await s.connection()
        await conn.execute(
            update(c).where(c.c.id == bindparam("cid"), c.c.fence == bindparam("old")).values(
                state=bindparam("state"), level=bindparam("level"), fence=bindparam("new"),
                deadline=bindparam("deadline")),
            [{"cid": p.call.id, "old": p.call.fence, "new": p.new.fence, "state": p.new.state.value,
              "level": p.new.level, "deadline": p.new.deadline} for p in planned])
        got = {cid: (state, level, fence) for cid, state, level, fence in (await conn.execute(
            select(c.c.id, c.c.state, c.c.level, c.c.fence).where(c.c.id.in_([p.call.id for p in planned])))).all()}
        alerts = await self._alerts(s, {p.call.alert_id for p in planned})
        contexts = {aid: MessageContext.of(a, self.templates) for aid, a in alerts.items()}
        rows: list[dict[str, Any]] = []
        link_rows: list[dict[str, Any]] = []
        fired = 0
        for p in planned:
            if got.get(p.call.id) != (p.new.state.value, p.new.level, p.new.fence):
                continue  # somebody else moved this call first
            fired += 1
            call, person = p.call, p.person
            region = roster.regions.get(call.region_code)
            for r in p.recipients:
                for channel in p.channels:
                    if not address_for(r, channel):
                        continue  # no address on this channel (e.g. no WeCom account)
                    template = self.templates.pick(RUNG_TEMPLATE[p.action], channel)
                    link = ""
                    if self.links is not None and self.templates.uses(template, "link") and call.id is not None:
                        token, lrow = self.links.row(call_id=call.id, alert_id=call.alert_id, person_id=r.id,
                                                     expires_at=self.links.expiry(alerts[call.alert_id], now),
                                                     now=now)
                        link_rows.append(lrow)
                        link = self.links.url(token)
                    body = render(contexts[call.alert_id], template, r, roles=self.roles, call=call,
                                  official=person, region_name=region.name if region else call.region_code,
                                  link=link)
                    rows.append(delivery_row(call.alert_id, call.id, call.step, r, channel, Purpose.ESCALATION,
                                             p.new.level, body, now))
            events.record(s, now, "call_escalated" if p.action != Action.DUTY_ROOM else "call_to_duty_room",
                          alert_id=call.alert_id, call_id=call.id, person_id=call.person_id,
                          level=p.new.level, action=p.action.value, recipients=[r.id for r in p.recipients],
                          fence=p.new.fence)
            if p.action != Action.DUTY_ROOM and not p.recipients:
                events.record(s, now, "escalation_gap", alert_id=call.alert_id, call_id=call.id,
                              action=p.action.value)
        if rows:
            await conn.execute(insert(Delivery), rows)
        if link_rows and self.links is not None:
            await self.links.insert_rows(s, link_rows)
        return fired

    async def _alerts(self, s: AsyncSession, alert_ids: set[int]) -> dict[int, Alert]:
        """The batch's alerts, loaded once and without the heavy columns (covered codes, raw
        XML) that a county-wide warning makes large."""
        alerts = (await s.exec(select(Alert).where(col(Alert.id).in_(alert_ids)).options(
            defer(Alert.region_codes), defer(Alert.raw_xml), defer(Alert.description)))).all()  # type: ignore[arg-type]
        return {a.id: a for a in alerts if a.id is not None}

    async def next_deadline(self) -> datetime | None:
        async with self.db.read() as s:
            return (await s.exec(select(Call.deadline).where(Call.state == CallState.OPEN,
                                 col(Call.deadline).is_not(None)).order_by(col(Call.deadline)).limit(1))).first()

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
