"""Accepting a warning: parse → dedupe → classify → target → plan → persist (one transaction).

Nothing is stored unless the whole message is acceptable; an accepted alert and every
delivery and call it needs are committed together, so a crash right after the 201 loses
nothing (the outbox and escalation workers pick the rows up on restart).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.cap.classify import Vocabulary, classify, explicit_step
from warnd.cap.model import CapInfo, CapMessage
from warnd.cap.parser import CapError, parse_cap
from warnd.clock import Clock
from warnd.config import County
from warnd.confirm.links import LinkIssuer
from warnd.core.domain import (
    AlertFacts,
    AlertState,
    AlertStatus,
    CallState,
    Colour,
    CoverageGap,
    MsgType,
    PersonView,
    Purpose,
    Step,
)
from warnd.core.planner import plan_alert
from warnd.core.policy import Policy, step_from_lead
from warnd.core.replies import short_code_for
from warnd.core.roles import Roles
from warnd.core.targeting import resolve_area
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery
from warnd.engine import events
from warnd.engine.messages import MessageContext, address_for, render
from warnd.engine.roster import RosterCache, RosterSnapshot


class IngestError(Exception):
    """Rejected input. Rendered as application/problem+json; nothing was stored."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.field, self.extra = status, title, detail, field, extra


@dataclass
class IngestResult:
    alert_id: int
    created: bool
    step: str = ""
    colour: str = ""
    calls: int = 0
    deliveries: int = 0
    gaps: list[CoverageGap] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    out_of_area: list[str] = field(default_factory=list)
    cancelled_calls: int = 0
    superseded: list[int] = field(default_factory=list)


def _pick_info(msg: CapMessage) -> CapInfo | None:
    for info in msg.infos:
        if info.language.lower().startswith("zh"):
            return info
    return msg.infos[0] if msg.infos else None


class Ingestor:
    def __init__(
        self, db: Database, clock: Clock, policy: Policy, vocabulary: Vocabulary,
        templates: Templates, roles: Roles, roster: RosterCache, county: County,
        on_change: Callable[[], None] = lambda: None,
    ):
        self.db, self.clock, self.policy, self.vocab = db, clock, policy, vocabulary
        self.templates, self.roles, self.roster, self.county = templates, roles, roster, county
        self.on_change = on_change
        self.send_grace = timedelta(minutes=10)
        # Optional hook (warnd.feeds): trust check and normalisation of a parsed message
        # before anything is stored; raises IngestError to refuse it.
        self.prepare: Callable[[CapMessage, str], Awaitable[CapMessage]] | None = None
        self.links: LinkIssuer | None = None  # signed confirm links for templates using {link}

    async def submit_cap(self, data: bytes, source: str = "api") -> IngestResult:
        try:
            msg = parse_cap(data)
        except CapError as e:
            raise IngestError(400, "Invalid CAP message", e.detail, field=e.field) from e
        if self.prepare is not None:
            msg = await self.prepare(msg, source)
        existing = await self._find(msg.sender, msg.identifier)
        if existing is not None:
            return IngestResult(alert_id=existing, created=False)
        if msg.status in (AlertStatus.DRAFT, AlertStatus.SYSTEM):
            raise IngestError(422, "Not disseminated", f"status {msg.status} is not disseminated", "alert.status")
        if msg.msg_type in (MsgType.ACK, MsgType.ERROR):
            raise IngestError(422, "Not disseminated", f"msgType {msg.msg_type} is not disseminated", "alert.msgType")
        try:
            if msg.msg_type == MsgType.CANCEL:
                result = await self._cancel_message(msg, data, source)
            else:
                result = await self._alert_message(msg, data, source)
        except IntegrityError:
            # A concurrent submission of the same message won the race: same answer as a retry.
            again = await self._find(msg.sender, msg.identifier)
            if again is None:
                raise
            return IngestResult(alert_id=again, created=False)
        self.on_change()
        return result

    async def _find(self, sender: str, identifier: str) -> int | None:
        async with self.db.read() as s:
            return (await s.exec(select(Alert.id).where(Alert.sender == sender, Alert.identifier == identifier))).first()

    async def _referenced(self, s: AsyncSession, msg: CapMessage) -> list[Alert]:
        found: list[Alert] = []
        for sender, identifier, _sent in msg.references:
            row = (await s.exec(select(Alert).where(Alert.sender == sender, Alert.identifier == identifier))).first()
            if row is not None:
                found.append(row)
        return found

    async def _alert_message(self, msg: CapMessage, raw: bytes, source: str) -> IngestResult:
        info = _pick_info(msg)
        if info is None:
            raise IngestError(400, "Invalid CAP message", "an Alert or Update needs an <info> block", "alert.info")
        hazard, colour = classify(info, self.vocab)
        colour = colour or Colour.YELLOW  # no colour and Unknown severity: treat as yellow, not blue
        onset = info.onset or info.effective
        step = explicit_step(info) or step_from_lead(msg.sent, onset, self.policy)
        roster = await self.roster.get()
        area = resolve_area(info.areas, roster.regions, self.county.code)
        if not area.codes:
            raise IngestError(
                422, "Area covers no known region",
                "none of the area's codes or shapes matches a region of this county",
                "info.area", unknown_codes=list(area.unknown_codes), out_of_area=list(area.out_of_area),
            )
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            alert = Alert(
                sender=msg.sender, identifier=msg.identifier, sent=msg.sent, status=msg.status,
                msg_type=msg.msg_type, references=[[a, b, c.isoformat()] for a, b, c in msg.references],
                source=source, hazard=hazard, colour=colour, step=step, event=info.event,
                sender_name=info.sender_name or self.county.sender_name,
                headline=info.headline or info.event, description=info.description or "",
                instruction=info.instruction or "", area_desc="；".join(a.area_desc for a in info.areas),
                onset=onset, expires=info.expires, region_codes=sorted(area.codes),
                unknown_codes=list(area.unknown_codes), state=AlertState.ACTIVE, received_at=now,
                raw_xml=raw.decode("utf-8", errors="replace"),
            )
            s.add(alert)
            await s.flush()
            assert alert.id is not None
            result = IngestResult(alert.id, True, step=step, colour=colour,
                                  unknown_codes=list(area.unknown_codes), out_of_area=list(area.out_of_area))
            events.record(s, now, "alert_accepted", alert_id=alert.id, source=source, step=step,
                          colour=colour, hazard=hazard, status=msg.status, msg_type=msg.msg_type,
                          regions=len(area.codes), unknown_codes=list(area.unknown_codes))
            carried: dict[int, Call] = {}
            if msg.msg_type == MsgType.UPDATE:
                carried = await self._supersede(s, msg, alert, area.codes, roster, now, result)
            facts = AlertFacts(alert.id, hazard, colour, step, msg.status, area.codes, msg.sent, onset, info.expires)
            plan = plan_alert(facts, roster.regions, roster.people, self.policy, now)
            ctx = MessageContext.of(alert, self.templates)
            # Core bulk inserts: a county-wide imminent step is thousands of rows, and ORM
            # object construction would cost seconds while the storm is coming.
            call_rows: list[dict[str, Any]] = []
            for pc in plan.calls:
                row: dict[str, Any] = dict(
                    alert_id=alert.id, person_id=pc.person_id, step=step, role=pc.role,
                    region_code=pc.region_code, ladder=pc.ladder, channels=list(pc.channels),
                    state=CallState.OPEN.value, level=0, fence=0, short_code="", created_at=now,
                    # Until the warning has actually left, allow the send grace on top.
                    deadline=pc.deadline + self.send_grace,
                    window_seconds=int((pc.deadline - now).total_seconds()),
                    confirmed_at=None, confirmed_via=None, confirmed_by_id=None, note=None,
                )
                old = carried.get(pc.person_id)
                if old is not None:
                    # Confirmed the warning this one updates, and neither colour nor step rose.
                    row.update(state=CallState.CONFIRMED.value, deadline=None, confirmed_at=old.confirmed_at,
                               confirmed_via=old.confirmed_via, confirmed_by_id=old.confirmed_by_id,
                               note=f"carried over from alert {old.alert_id}")
                call_rows.append(row)
            call_ids: dict[int, int] = {}
            if call_rows:
                res = await (await s.connection()).execute(insert(Call).returning(col(Call.id), col(Call.person_id)), call_rows)
                call_ids = {pid: cid for cid, pid in res.all() if cid is not None}
                conn = await s.connection()
                await conn.execute(update(Call.__table__).where(  # type: ignore[attr-defined]
                    Call.__table__.c.id == bindparam("cid")).values(short_code=bindparam("code")),  # type: ignore[attr-defined]
                    [{"cid": cid, "code": short_code_for(cid)} for cid in call_ids.values()])
            events.record(s, now, "calls_opened", alert_id=alert.id, calls=len(call_ids),  # audit: traceable count
                          carried=sorted(call_ids[p] for p in carried if p in call_ids))
            state_of = {r["person_id"]: r["state"] for r in call_rows}
            delivery_rows = []
            link_rows: list[dict[str, Any]] = []
            for pd in plan.deliveries:
                person = roster.by_id[pd.person_id]
                if not address_for(person, pd.channel):
                    continue  # e.g. no WeCom account on file: the other channels carry it
                owner = pd.call_person_id or pd.person_id
                cid = call_ids[owner]
                template = self.templates.pick(
                    "update_info" if state_of[owner] == CallState.CONFIRMED else "warning", pd.channel)
                link = ""
                if self.links is not None and self.templates.uses(template, "link"):
                    token, lrow = self.links.row(call_id=cid, alert_id=alert.id, person_id=person.id,
                                                 expires_at=self.links.expiry(alert, now), now=now)
                    link_rows.append(lrow)
                    link = self.links.url(token)
                body = render(ctx, template, person, roles=self.roles, code=short_code_for(cid), link=link)
                delivery_rows.append(delivery_row(alert.id, cid, step, person, pd.channel, pd.purpose, 0, body, now))
            if delivery_rows:
                await (await s.connection()).execute(insert(Delivery), delivery_rows)
            if link_rows and self.links is not None:
                await self.links.insert_rows(s, link_rows)
            result.deliveries += len(delivery_rows)
            calls_by_person = call_ids
            result.calls = len(calls_by_person)
            result.gaps = list(plan.gaps)
            if plan.gaps:
                result.deliveries += await self._gap_notices(s, alert, ctx, plan.gaps, roster, now)
        return result

    async def _supersede(
        self, s: AsyncSession, msg: CapMessage, alert: Alert, codes: frozenset[str],
        roster: RosterSnapshot, now: datetime, result: IngestResult,
    ) -> dict[int, Call]:
        """Close the calls of the alerts this Update replaces. Returns the confirmed calls whose
        confirmation carries over (same or lower colour and step)."""
        carried: dict[int, Call] = {}
        for old in await self._referenced(s, msg):
            if old.state != AlertState.ACTIVE:
                continue
            old.state = AlertState.SUPERSEDED
            alert.supersedes_id = old.id
            result.superseded.append(old.id or 0)
            rose = (Colour(alert.colour).rank > Colour(old.colour).rank
                    or Step(alert.step).rank > Step(old.step).rank)
            for call in (await s.exec(select(Call).where(Call.alert_id == old.id))).all():
                if call.state == CallState.CONFIRMED and not rose:
                    carried[call.person_id] = call
                elif call.state in (CallState.OPEN, CallState.DUTY_ROOM):
                    call.state, call.deadline, call.fence = CallState.CANCELLED, None, call.fence + 1
                    events.record(s, now, "call_superseded", alert_id=old.id, call_id=call.id,
                                  person_id=call.person_id, by_alert=alert.id)
                    result.cancelled_calls += 1
            await self._cancel_pending(s, old.id)
            events.record(s, now, "alert_superseded", alert_id=old.id, by_alert=alert.id)
        return carried

    async def _cancel_message(self, msg: CapMessage, raw: bytes, source: str) -> IngestResult:
        now = self.clock.now()
        roster = await self.roster.get()  # before the transaction: SQLite has one writer
        async with self.db.session() as s, s.begin():
            targets = [a for a in await self._referenced(s, msg) if a.state == AlertState.ACTIVE]
            if not targets:
                raise IngestError(422, "Nothing to cancel",
                                  "the Cancel references no active warning", "alert.references")
            first = targets[0]
            info = _pick_info(msg)
            alert = Alert(
                sender=msg.sender, identifier=msg.identifier, sent=msg.sent, status=msg.status,
                msg_type=msg.msg_type, references=[[a, b, c.isoformat()] for a, b, c in msg.references],
                source=source, hazard=first.hazard, colour=first.colour, step=first.step,
                event=info.event if info else first.event, sender_name=first.sender_name,
                headline=first.headline, region_codes=first.region_codes, state=AlertState.CANCELLED,
                received_at=now, raw_xml=raw.decode("utf-8", errors="replace"),
            )
            s.add(alert)
            await s.flush()
            assert alert.id is not None
            result = IngestResult(alert.id, True, step=first.step, colour=first.colour)
            for target in targets:
                cancelled, notices = await self.cancel_in_session(s, target, roster, now,
                                                                  reason=f"CAP Cancel {msg.identifier}")
                result.cancelled_calls += cancelled
                result.deliveries += notices
        return result

    async def cancel(self, alert_id: int, reason: str) -> IngestResult:
        """Duty-room cancel (POST /alerts/{id}/cancel)."""
        now = self.clock.now()
        roster = await self.roster.get()
        async with self.db.session() as s, s.begin():
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise IngestError(404, "Not found", f"no alert {alert_id}")
            if alert.state != AlertState.ACTIVE:
                raise IngestError(409, "Not active", f"alert {alert_id} is {alert.state}")
            cancelled, notices = await self.cancel_in_session(s, alert, roster, now, reason=reason)
        self.on_change()
        return IngestResult(alert_id, False, step=alert.step, colour=alert.colour,
                            cancelled_calls=cancelled, deliveries=notices)

    async def cancel_in_session(self, s: AsyncSession, alert: Alert, roster: RosterSnapshot, now: datetime,
                                reason: str) -> tuple[int, int]:
        """Stop every pending escalation and tell everyone already reached that it is lifted."""
        alert.state = AlertState.CANCELLED
        cancelled = 0
        for call in (await s.exec(select(Call).where(Call.alert_id == alert.id,
                                                     col(Call.state).in_([CallState.OPEN, CallState.DUTY_ROOM])))).all():
            call.state, call.deadline, call.fence = CallState.CANCELLED, None, call.fence + 1
            cancelled += 1
        await self._cancel_pending(s, alert.id)
        reached = (await s.exec(select(Delivery.person_id, Delivery.channel).where(
            # "sending": the provider may already have it; a lifted notice must follow it.
            Delivery.alert_id == alert.id, col(Delivery.state).in_(["sending", "sent", "delivered"]),
            col(Delivery.purpose).in_([Purpose.WARNING, Purpose.ESCALATION])).distinct())).all()
        ctx = MessageContext.of(alert, self.templates)
        notices = 0
        for person_id, channel in sorted(set(reached)):
            person = roster.by_id.get(person_id)
            if person is None:
                continue
            assert alert.id is not None
            await (await s.connection()).execute(insert(Delivery).values(delivery_row(
                alert.id, None, None, person, channel, Purpose.CANCEL_NOTICE, None,
                render(ctx, "cancel_notice", person, roles=self.roles), now)))
            notices += 1
        events.record(s, now, "alert_cancelled", alert_id=alert.id, reason=reason,
                      calls_cancelled=cancelled, notices=notices)
        return cancelled, notices

    async def _cancel_pending(self, s: AsyncSession, alert_id: int | None) -> None:
        for d in (await s.exec(select(Delivery).where(Delivery.alert_id == alert_id, Delivery.state == "pending",
                                                      Delivery.purpose != Purpose.CANCEL_NOTICE))).all():
            d.state = "cancelled"

    async def _gap_notices(self, s: AsyncSession, alert: Alert, ctx: MessageContext,
                     gaps: list[CoverageGap] | tuple[CoverageGap, ...], roster: RosterSnapshot, now: datetime) -> int:
        assert alert.id is not None
        details = "、".join(
            f"{roster.regions[g.region_code].name if g.region_code in roster.regions else g.region_code}"
            f"（{self.roles.label(g.role)}）" for g in gaps[:8]
        ) + ("等" if len(gaps) > 8 else "")
        events.record(s, now, "coverage_gap", alert_id=alert.id,
                      gaps=[{"region": g.region_code, "role": g.role, "level": g.level} for g in gaps])
        rows: list[dict[str, Any]] = []
        for officer in roster.duty_officers():
            body = render(ctx, "gap_notice", officer, roles=self.roles, count=len(gaps), details=details)
            rows.append(delivery_row(alert.id, None, None, officer, "sms", Purpose.GAP_NOTICE, None, body, now))
        if rows:
            await (await s.connection()).execute(insert(Delivery), rows)
        return len(rows)

def delivery_row(alert_id: int, call_id: int | None, step: str | None, person: PersonView, channel: str,
                 purpose: Purpose, rung: int | None, body: str, now: datetime) -> dict[str, Any]:
    """One outbox row. The idempotency key names exactly one message: alert, call, recipient,
    channel, purpose and ladder rung; the unique index makes a second plan of it impossible."""
    return dict(
        idempotency_key=(f"a{alert_id}:c{call_id if call_id is not None else '-'}:p{person.id}:{channel}:"
                         f"{purpose.value}:{rung if rung is not None else '-'}"),
        alert_id=alert_id, call_id=call_id, person_id=person.id, channel=channel, purpose=purpose.value,
        step=step, rung=rung, to_address=address_for(person, channel), body=body, state="pending",
        attempts=0, next_attempt_at=now, created_at=now,
    )
