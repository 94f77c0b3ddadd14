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

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.cap.classify import Vocabulary, classify, explicit_step, hazard_conflict
from warnd.cap.formats import parse_alert
from warnd.cap.gbt import FORMAT as GBT
from warnd.cap.model import CapInfo, CapMessage
from warnd.cap.parser import CapError
from warnd.clock import Clock
from warnd.config import County, IngestCfg
from warnd.core.domain import (
    AlertFacts,
    AlertState,
    AlertStatus,
    CallState,
    Colour,
    CoverageGap,
    MsgType,
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
from warnd.db.models import Alert, Call
from warnd.engine import alerts, calls, deliveries, events
from warnd.engine.messages import Composer, Links, address_for
from warnd.engine.roster import RosterCache, RosterSnapshot

log = structlog.get_logger("warnd.ingest")

# A hook that checks and normalises a parsed message before anything is stored (the feeds'
# source trust and mapping); raises IngestError to refuse it.
Prepare = Callable[[CapMessage, str], Awaitable[CapMessage]]


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
    state: str = AlertState.ACTIVE.value  # out_of_area: recorded, nobody called (answered 202)


def _pick_info(msg: CapMessage) -> CapInfo | None:
    for info in msg.infos:
        if info.language.lower().startswith("zh"):
            return info
    return msg.infos[0] if msg.infos else None




def _approval(approved_by: str | None) -> dict[str, Any]:
    """The approver's name for the event, when a second person approved (two-person rule)."""
    return {"approved_by": approved_by} if approved_by else {}


class Ingestor:
    def __init__(
        self, db: Database, clock: Clock, policy: Policy, vocabulary: Vocabulary,
        templates: Templates, roles: Roles, roster: RosterCache, county: County, *,
        links: Links | None = None, prepare: Prepare | None = None,
        on_change: Callable[[], None] = lambda: None, send_grace: timedelta = calls.SEND_GRACE,
        cfg: IngestCfg | None = None,
    ):
        self.db, self.clock, self.policy, self.vocab = db, clock, policy, vocabulary
        self.templates, self.roles, self.roster, self.county = templates, roles, roster, county
        self.links, self.prepare, self.on_change, self.send_grace = links, prepare, on_change, send_grace
        self.cfg = cfg or IngestCfg()

    def composer(self, links: bool = True, roster: RosterSnapshot | None = None) -> Composer:
        return Composer(self.templates, self.roles, self.links if links else None, policy=self.policy,
                        regions=roster.regions if roster is not None else None)

    async def submit_cap(self, data: bytes, source: str = "api", actor: str | None = None,
                         approved_by: str | None = None) -> IngestResult:
        """A CAP 1.2/1.1 or GB/T 35965.1 document, told apart by the document itself.
        `actor`: the user or "api-token" that submitted it over the API (None: a feed);
        `approved_by`: the second person who approved it (engine/approvals.py)."""
        try:
            msg = parse_alert(data)
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
        await self._check_times(msg, source, actor)
        await self._check_trust(msg, source, actor)
        try:
            if msg.msg_type == MsgType.CANCEL:
                result = await self._cancel_message(msg, data, source, actor)
            else:
                result = await self._alert_message(msg, data, source, actor, approved_by)
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

    async def _refuse(self, msg: CapMessage, source: str, actor: str | None, error: IngestError) -> IngestError:
        """Record why a message was refused (its own transaction: nothing else is stored)."""
        async with self.db.session() as s, s.begin():
            events.record(s, self.clock.now(), "alert_refused", source=source, sender=msg.sender,
                          identifier=msg.identifier, status=error.status, reason=error.title, detail=error.detail,
                          field=error.field, actor=actor)
        return error

    async def _check_times(self, msg: CapMessage, source: str, actor: str | None) -> None:
        """Time sanity on every path (API, feeds, telemetry): nothing stale, expired on arrival,
        self-contradicting or from the future is disseminated."""
        now = self.clock.now()
        error: IngestError | None = None
        future = timedelta(minutes=self.cfg.max_future_minutes)
        if any(i.expires is not None and i.expires < msg.sent for i in msg.infos):
            error = IngestError(400, "Expires before sent", "an <info> expires before the message was sent",
                                "info.expires")
        elif msg.sent - now > future:
            error = IngestError(422, "Sent in the future",
                                f"sent {msg.sent.isoformat()} is more than {self.cfg.max_future_minutes:g} minutes "
                                f"ahead of this server's clock ({now.isoformat()})", "alert.sent")
        elif msg.msg_type in (MsgType.ALERT, MsgType.UPDATE) and msg.infos:
            if all(i.expires is not None and i.expires <= now for i in msg.infos):
                error = IngestError(422, "Expired", "every <info> of the message has expired: not disseminated",
                                    "info.expires")
            elif all(i.expires is None for i in msg.infos) and \
                    now - msg.sent > timedelta(hours=self.cfg.max_age_without_expires_hours):
                error = IngestError(422, "Stale", f"sent {msg.sent.isoformat()} with no expires, more than "
                                    f"{self.cfg.max_age_without_expires_hours:g} hours ago: not disseminated",
                                    "alert.sent")
        if error is not None:
            raise await self._refuse(msg, source, actor, error)

    def may_act_on(self, sender: str, owner: str) -> bool:
        """Whether a message from `sender` may update or cancel a warning `owner` sent: its own,
        or one the configuration explicitly lets it supersede."""
        return sender == owner or owner in self.cfg.may_supersede.get(sender, [])

    async def _check_trust(self, msg: CapMessage, source: str, actor: str | None) -> None:
        """Trust follows the chain: an Update or Cancel acts only on warnings of its own sender
        (or one it may supersede by configuration). A reference to anyone else's active warning
        refuses the whole message: nothing changes."""
        if msg.msg_type not in (MsgType.UPDATE, MsgType.CANCEL) or not msg.references:
            return
        async with self.db.read() as s:
            targets = [a for a in await self._referenced(s, msg) if a.state == AlertState.ACTIVE]
        foreign = [a for a in targets if not self.may_act_on(msg.sender, a.sender)]
        if foreign:
            a = foreign[0]
            raise await self._refuse(msg, source, actor, IngestError(
                403, "Not the sender's warning",
                f"sender {msg.sender!r} may not {'cancel' if msg.msg_type == MsgType.CANCEL else 'update'} "
                f"warning {a.identifier!r} of sender {a.sender!r}", "alert.references",
                referenced=[[x.sender, x.identifier] for x in foreign]))

    async def _referenced(self, s: AsyncSession, msg: CapMessage) -> list[Alert]:
        """The warnings a message references, and every later message of their chains. GB/T
        35965.1 chains reference their FIRST message, which an earlier Update has already
        superseded: the chain is followed (alerts.supersedes_id) to whatever is active now."""
        found: list[Alert] = []
        for sender, identifier, _sent in msg.references:
            row = (await s.exec(select(Alert).where(Alert.sender == sender, Alert.identifier == identifier))).first()
            if row is not None and row not in found:
                found.append(row)
        frontier = [a.id for a in found if a.id is not None]
        seen = set(frontier)
        while frontier:
            later = (await s.exec(select(Alert).where(col(Alert.supersedes_id).in_(frontier))
                                  .order_by(col(Alert.id)))).all()
            frontier = []
            for row in later:
                if row.id is not None and row.id not in seen:
                    seen.add(row.id)
                    found.append(row)
                    frontier.append(row.id)
        return found

    async def _alert_message(self, msg: CapMessage, raw: bytes, source: str, actor: str | None,
                             approved_by: str | None = None) -> IngestResult:
        info = _pick_info(msg)
        if info is None:
            raise IngestError(400, "Invalid CAP message", "an Alert or Update needs an <info> block", "alert.info")
        hazard, colour = classify(info, self.vocab)
        conflict = hazard_conflict(info, self.vocab)
        colour = colour or Colour.YELLOW  # no colour and Unknown severity: treat as yellow, not blue
        onset = info.onset or info.effective
        expires, expires_default = info.expires, False
        if expires is None and msg.format == GBT:
            # GB/T messages often say <expires/> or 待定: a warning must never live forever.
            expires, expires_default = max(msg.sent, onset or msg.sent) + self.vocab.default_expiry(hazard), True
        channel_texts = self.vocab.channel_texts(msg.channel_texts)
        step = explicit_step(info) or step_from_lead(msg.sent, onset, self.policy)
        roster = await self.roster.get()
        area = resolve_area(info.areas, roster.regions, self.county.code)
        now = self.clock.now()
        composer = self.composer(roster=roster)
        async with self.db.session() as s, s.begin():
            alert = Alert(
                sender=msg.sender, identifier=msg.identifier, sent=msg.sent, status=msg.status,
                msg_type=msg.msg_type, references=[[a, b, c.isoformat()] for a, b, c in msg.references],
                source=source, hazard=hazard, colour=colour, step=step, event=info.event or self.vocab.label(hazard),
                sender_name=info.sender_name or self.county.sender_name,
                headline=info.headline or info.event, description=info.description or "",
                instruction=info.instruction or "", area_desc="；".join(a.area_desc for a in info.areas),
                onset=onset, expires=expires, region_codes=sorted(area.codes), channel_texts=channel_texts,
                unknown_codes=list(area.unknown_codes),
                state=AlertState.ACTIVE if area.codes else AlertState.OUT_OF_AREA, received_at=now,
                raw_xml=raw.decode("utf-8", errors="replace"),
            )
            s.add(alert)
            await s.flush()
            if conflict is not None:
                events.record(s, now, "hazard_code_conflict", alert_id=alert.id, sender=msg.sender,
                              identifier=msg.identifier, codes=[v for _n, v in info.event_codes],
                              code_hazard=conflict[0], text_hazard=conflict[1], used=hazard)
                log.warning("event code and text disagree; the text is trusted", alert_id=alert.id,
                            code_hazard=conflict[0], text_hazard=conflict[1])
            if not area.codes:
                return await self._out_of_area(s, msg, alert, source, actor, area.unknown_codes, area.out_of_area, now)
            assert alert.id is not None
            result = IngestResult(alert.id, True, step=step, colour=colour,
                                  unknown_codes=list(area.unknown_codes), out_of_area=list(area.out_of_area))
            events.record(s, now, "alert_accepted", alert_id=alert.id, source=source, step=step,
                          colour=colour, hazard=hazard, status=msg.status, msg_type=msg.msg_type,
                          regions=len(area.codes), unknown_codes=list(area.unknown_codes),
                          actor=actor, format=msg.format,
                          expires_default=expires.isoformat() if expires_default and expires else None,
                          **_approval(approved_by))
            carried: dict[int, Call] = {}
            if msg.msg_type == MsgType.UPDATE:
                carried = await self._supersede(s, msg, alert, now, result)
            facts = AlertFacts(alert.id, hazard, colour, step, msg.status, area.codes, msg.sent, onset, expires)
            plan = plan_alert(facts, roster.regions, roster.index, self.policy, now)  # the cached index
            rows = []
            for pc in plan.calls:
                row = calls.new_row(alert.id, step, pc, now, grace=self.send_grace)
                old = carried.get(pc.person_id)
                rows.append(calls.carried_over(row, old) if old is not None else row)
            call_ids = await calls.open_calls(s, rows)
            state_of = {r["person_id"]: r["state"] for r in rows}
            events.record(s, now, "calls_opened", alert_id=alert.id, calls=len(call_ids),  # audit: traceable count
                          carried=sorted(call_ids[p] for p in carried if p in call_ids))
            delivery_rows = []
            for pd in plan.deliveries:
                person = roster.by_id[pd.person_id]
                if not address_for(person, pd.channel):
                    continue  # e.g. no WeCom account on file: the other channels carry it
                owner = pd.call_person_id or pd.person_id
                cid = call_ids[owner]
                template = "update_info" if state_of[owner] == CallState.CONFIRMED else "warning"
                body = composer.body(alert, template, pd.channel, person, now, call_id=cid,
                                     code=short_code_for(cid))
                delivery_rows.append(deliveries.new_row(alert.id, cid, step, person, pd.channel, pd.purpose, 0,
                                                        body, now))
            result.deliveries += await deliveries.insert_rows(s, delivery_rows)
            await composer.flush_links(s)
            result.calls = len(call_ids)
            result.gaps = list(plan.gaps)
            if plan.gaps:
                result.deliveries += await self._gap_notices(s, alert, composer, plan.gaps, roster, now)
        return result

    async def _supersede(self, s: AsyncSession, msg: CapMessage, alert: Alert, now: datetime,
                         result: IngestResult) -> dict[int, Call]:
        """Close the calls of the alerts this Update replaces. Returns the confirmed calls whose
        confirmation carries over (same or lower colour and step)."""
        carried: dict[int, Call] = {}
        for old in await self._referenced(s, msg):
            if old.state != AlertState.ACTIVE:
                continue
            confirmed = (await s.exec(select(Call).where(Call.alert_id == old.id,
                                                         Call.state == CallState.CONFIRMED))).all()
            cancelled = await alerts.supersede(s, old, alert, now)
            if cancelled is None:
                continue  # lifted or superseded meanwhile
            alert.supersedes_id = old.id
            result.superseded.append(old.id or 0)
            result.cancelled_calls += len(cancelled)
            rose = (Colour(alert.colour).rank > Colour(old.colour).rank
                    or Step(alert.step).rank > Step(old.step).rank)
            if not rose:
                for call in confirmed:
                    carried[call.person_id] = call
        return carried

    async def _cancel_message(self, msg: CapMessage, raw: bytes, source: str, actor: str | None) -> IngestResult:
        now = self.clock.now()
        roster = await self.roster.get()  # before the transaction: SQLite has one writer
        composer = self.composer(links=False)
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
                event=(info.event if info else "") or first.event, sender_name=first.sender_name,
                headline=first.headline, region_codes=first.region_codes, state=AlertState.CANCELLED,
                received_at=now, raw_xml=raw.decode("utf-8", errors="replace"),
            )
            s.add(alert)
            await s.flush()
            assert alert.id is not None
            result = IngestResult(alert.id, True, step=first.step, colour=first.colour)
            for target in targets:
                lifted = await alerts.lift(s, target, AlertState.CANCELLED, now, reason=f"CAP Cancel {msg.identifier}",
                                           roster=roster, composer=composer, actor=actor)
                if lifted is not None:
                    result.cancelled_calls += lifted[0]
                    result.deliveries += lifted[1]
        return result

    async def cancel(self, alert_id: int, reason: str, actor: str | None = None,
                     approved_by: str | None = None) -> IngestResult:
        """Duty-room cancel (approved through engine/approvals.py: POST /alerts/{id}/cancel)."""
        now = self.clock.now()
        roster = await self.roster.get()
        async with self.db.session() as s, s.begin():
            alert = await s.get(Alert, alert_id)
            if alert is None:
                raise IngestError(404, "Not found", f"no alert {alert_id}")
            if alert.state != AlertState.ACTIVE:
                raise IngestError(409, "Not active", f"alert {alert_id} is {alert.state}")
            lifted = await alerts.lift(s, alert, AlertState.CANCELLED, now, reason=reason, roster=roster,
                                       composer=self.composer(links=False), actor=actor,
                                       **_approval(approved_by))
            if lifted is None:
                raise IngestError(409, "Not active", f"alert {alert_id} is no longer active")
        self.on_change()
        return IngestResult(alert_id, False, step=alert.step, colour=alert.colour,
                            cancelled_calls=lifted[0], deliveries=lifted[1])

    async def _gap_notices(self, s: AsyncSession, alert: Alert, composer: Composer,
                           gaps: list[CoverageGap] | tuple[CoverageGap, ...], roster: RosterSnapshot,
                           now: datetime) -> int:
        assert alert.id is not None
        details = "、".join(
            f"{roster.regions[g.region_code].name if g.region_code in roster.regions else g.region_code}"
            f"（{self.roles.label(g.role)}）" for g in gaps[:8]
        ) + ("等" if len(gaps) > 8 else "")
        events.record(s, now, "coverage_gap", alert_id=alert.id,
                      gaps=[{"region": g.region_code, "role": g.role, "level": g.level} for g in gaps])
        rows = [deliveries.new_row(alert.id, None, None, officer, "sms", Purpose.GAP_NOTICE, None,
                                   composer.body(alert, "gap_notice", "sms", officer, now, count=len(gaps),
                                                 details=details), now)
                for officer in roster.duty_officers()]
        return await deliveries.insert_rows(s, rows)

    async def _out_of_area(self, s: AsyncSession, msg: CapMessage, alert: Alert, source: str, actor: str | None,
                           unknown: tuple[str, ...], elsewhere: tuple[str, ...], now: datetime) -> IngestResult:
        """Nothing in this county is covered: the message is recorded (the duty room sees that
        a warning for a neighbouring area arrived) and nobody is called. An Update that moves a
        warning of ours entirely elsewhere still replaces it: our calls stop."""
        assert alert.id is not None
        result = IngestResult(alert.id, True, step=alert.step, colour=alert.colour, unknown_codes=list(unknown),
                              out_of_area=list(elsewhere), state=AlertState.OUT_OF_AREA.value)
        events.record(s, now, "alert_out_of_area", alert_id=alert.id, source=source, sender=msg.sender,
                      identifier=msg.identifier, headline=alert.headline, area=alert.area_desc,
                      unknown_codes=list(unknown), out_of_area=list(elsewhere), actor=actor)
        if msg.msg_type == MsgType.UPDATE:
            await self._supersede(s, msg, alert, now, result)
        return result
