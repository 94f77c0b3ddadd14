"""The `public` module: plans the public side of each warning the policy says reaches the public.

For an active, real (CAP status Actual) warning whose hazard × colour × step matches a
[[public]] rule, every active number on the public lists of the rule's kinds in the villages
and groups the warning covers is a *target* (one per number, whatever lists it is on). For
each target the planner decides, within the provider's per-number budget
(core/public_budget.py, counting every SMS the number already has, officials' included):
send now, deferred to a time that fits, over budget, or opted out (回复TD退订). Each decision
is a `public_targets` row; a send is an outbox row (purpose `public`: tracked, never 叫应)
sent by the public outbox at the provider's pace. A more urgent warning displaces a pending
lower step's message when a number's budget is full (its delivery is cancelled, its target
marked displaced).

Planning goes in chunks of `plan_chunk` numbers, each one transaction: a crash in the middle
resumes with the numbers not yet targeted (the campaign stays `planning`), and the outbox
row's idempotency key (pub:a<alert>:<number>) makes a second plan of a number impossible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Channel
from warnd.clock import Clock
from warnd.config import PublicBudgetCfg, PublicCfg
from warnd.core.domain import (
    AlertState,
    AlertStatus,
    Colour,
    DeliveryState,
    PersonView,
    Purpose,
    Step,
)
from warnd.core.policy import Policy
from warnd.core.public_budget import (
    NEVER_DISPLACED,
    Booking,
    Ledger,
    NumberBudget,
    Outcome,
    Request,
)
from warnd.core.public_policy import PublicRule, public_rule_for
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Delivery, PublicCampaign, PublicRecipient, PublicTarget
from warnd.engine import deliveries, events
from warnd.engine.messages import MessageContext
from warnd.engine.module import ModuleBase
from warnd.public.optouts import opted_out

# pg advisory lock keys: this base + the alert id (other users of advisory locks stay clear).
PLANNING_LOCK = 0x57_41_52_4E_50_00_00_00

log = structlog.get_logger("warnd.public")

PT = PublicTarget.__table__  # type: ignore[attr-defined]
KIND_ORDER = {"danger_zone": 0, "grid": 1, "worker": 2, "visitor": 3, "subscriber": 4}
BOOKED_STATES = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.DELIVERED)
PUBLIC_KEY = "pub:a{alert}:{phone}"


def budget_of(cfg: PublicBudgetCfg) -> NumberBudget:
    return NumberBudget(timedelta(seconds=cfg.same_text_interval_seconds), cfg.per_day,
                        timedelta(hours=cfg.window_hours))


def budget_for(cfg: PublicCfg, provider: str) -> PublicBudgetCfg:
    return cfg.budgets.get(provider) or PublicBudgetCfg()


@dataclass(frozen=True)
class Target:
    phone: str
    village_code: str
    kind: str
    shelter: str


class PublicFanout(ModuleBase):
    name = "public"
    poll_seconds = 5.0  # warnings written by another instance send no wake

    def __init__(self, db: Database, clock: Clock, policy: Policy, templates: Templates, cfg: PublicCfg,
                 channels: Mapping[str, Channel], on_change: Callable[[], None] = lambda: None,
                 fail_after_chunks: int | None = None):
        super().__init__()
        self.db, self.clock, self.policy, self.templates, self.cfg = db, clock, policy, templates, cfg
        self.channels, self.on_change = channels, on_change
        self.fail_after_chunks = fail_after_chunks  # crash tests: raise after writing this many chunks

    async def step(self) -> bool:
        async with self.db.read() as s:
            alert = (await s.exec(select(Alert).outerjoin(
                PublicCampaign, col(PublicCampaign.alert_id) == col(Alert.id)).where(
                Alert.state == AlertState.ACTIVE, col(Alert.fallback_for_id).is_(None),
                or_(col(PublicCampaign.alert_id).is_(None), col(PublicCampaign.state) == "planning")).order_by(
                col(Alert.id)).limit(1))).first()
        if alert is None or await self._officials_due():
            return False  # the outbox kicks every module once it has taken officials' messages
        await self.plan(alert)
        self.on_change()
        return True

    async def _officials_due(self) -> bool:
        """Officials' messages still waiting to be taken by their outbox: planning waits, so a
        public fan-out never holds the database (SQLite has one writer) ahead of 叫应 traffic."""
        async with self.db.read() as s:
            return (await s.exec(select(Delivery.id).where(
                Delivery.state == DeliveryState.PENDING, col(Delivery.next_attempt_at) <= self.clock.now(),
                Delivery.purpose != Purpose.PUBLIC).limit(1))).first() is not None

    def rule_for(self, alert: Alert) -> PublicRule | None:
        if not self.cfg.enabled or alert.status != AlertStatus.ACTUAL:
            return None  # drills and tests never text the public
        try:
            colour, step = Colour(alert.colour), Step(alert.step)
        except ValueError:
            return None
        return public_rule_for(self.policy.public, alert.hazard, colour, step)

    async def plan(self, alert: Alert) -> None:
        """Plan the warning's public fan-out, by one instance at a time (see `_planner`)."""
        assert alert.id is not None
        async with self._planner(alert.id) as mine:
            if mine:
                await self._plan(alert)

    @asynccontextmanager
    async def _planner(self, alert_id: int) -> AsyncIterator[bool]:
        """Whether this instance is the one planning `alert_id` now. On PostgreSQL several
        instances run this module: a session advisory lock, held on its own connection for the
        whole planning, lets one plan while the others move on (and is released by the server
        if the holder dies, so a crashed planning is resumed by whoever comes next). SQLite
        runs one instance."""
        if self.db.is_sqlite:
            yield True
            return
        key = PLANNING_LOCK + alert_id
        async with self.db.engine.connect() as conn:
            got = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar())
            await conn.commit()
            if not got:
                yield False
                return
            try:
                async with self.db.read() as s:  # planned meanwhile by the instance that held it
                    campaign = await s.get(PublicCampaign, alert_id)
                yield campaign is None or campaign.state == "planning"
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()

    async def _plan(self, alert: Alert) -> None:
        assert alert.id is not None
        now = self.clock.now()
        rule = self.rule_for(alert)
        if rule is None:
            async with self.db.session() as s, s.begin():
                if await s.get(PublicCampaign, alert.id) is None:
                    s.add(PublicCampaign(alert_id=alert.id, state="skipped", created_at=now, planned_at=now))
            return
        async with self.db.session() as s, s.begin():
            if await s.get(PublicCampaign, alert.id) is None:
                s.add(PublicCampaign(alert_id=alert.id, state="planning", rule=rule.name, kinds=list(rule.kinds),
                                     created_at=now))
        targets = await self._targets(alert, rule)
        channel = self.channels.get(rule.channel)
        provider = channel.provider if channel is not None else ""
        budget = budget_of(budget_for(self.cfg, provider))
        ledger = Ledger(budget, await self._bookings(rule.channel, {t.phone for t in targets}, budget, now))
        async with self.db.read() as s:
            done = set((await s.exec(select(PublicTarget.phone).where(PublicTarget.alert_id == alert.id))).all())
            opted = await opted_out(s)
        todo = [t for t in targets if t.phone not in done]
        ctx = MessageContext.of(alert, self.templates)
        not_after = now + timedelta(minutes=self.cfg.max_delay_minutes)
        if alert.expires is not None:
            not_after = min(not_after, alert.expires)
        rank = Step(alert.step).rank
        counts: dict[str, int] = {}
        chunk = self.cfg.plan_chunk
        for n, i in enumerate(range(0, len(todo), chunk)):
            if self.fail_after_chunks is not None and n >= self.fail_after_chunks:
                raise RuntimeError("public fan-out interrupted (test)")
            async with self.db.session() as s, s.begin():
                await self._write(s, alert, rule, ctx, todo[i:i + chunk], opted, ledger, rank, not_after, now,
                                  counts)
            self.on_change()  # the public outbox starts on this chunk while the next is planned
        async with self.db.session() as s, s.begin():
            total = (await s.exec(select(PublicTarget.id).where(PublicTarget.alert_id == alert.id))).all()
            await (await s.connection()).execute(update(PublicCampaign.__table__).where(  # type: ignore[attr-defined]
                PublicCampaign.__table__.c.alert_id == alert.id).values(  # type: ignore[attr-defined]
                state="planned", targeted=len(total), planned_at=now))
            events.record(s, now, "public_planned", alert_id=alert.id, rule=rule.name, targets=len(total),
                          **counts)
        log.info("public fan-out planned", alert=alert.id, rule=rule.name, targets=len(total), **counts)

    async def _targets(self, alert: Alert, rule: PublicRule) -> list[Target]:
        """One target per number in the covered villages and groups (a danger-zone listing
        first: its 转移地点 goes into the text)."""
        codes = [str(c) for c in alert.region_codes]
        villages = [c for c in codes if len(c) == 12]
        async with self.db.read() as s:
            rows = (await s.exec(select(PublicRecipient.phone, PublicRecipient.village_code, PublicRecipient.kind,
                                        PublicRecipient.shelter).where(
                col(PublicRecipient.active).is_(True), col(PublicRecipient.kind).in_(list(rule.kinds)),
                or_(col(PublicRecipient.region_code).in_(codes), col(PublicRecipient.village_code).in_(villages)))
            )).all()
        best: dict[str, Target] = {}
        for phone, village, kind, shelter in sorted(rows, key=lambda r: (KIND_ORDER.get(r[2], 9), r[0], r[1])):
            if phone not in best:
                best[phone] = Target(phone, village, kind, shelter)
            elif shelter and not best[phone].shelter:
                best[phone] = Target(phone, best[phone].village_code, best[phone].kind, shelter)
        return sorted(best.values(), key=lambda t: (t.village_code, t.phone))

    async def _bookings(self, channel: str, phones: set[str], budget: NumberBudget,
                        now: datetime) -> dict[str, list[Booking]]:
        """What each number already has in the budget window on this channel."""
        since = now - budget.window
        D = Delivery.__table__.c  # type: ignore[attr-defined]
        async with self.db.read() as s:
            rows = (await (await s.connection()).execute(sa_select(
                D.id, D.to_address, D.purpose, D.state, D.step, D.body, D.sent_at, D.next_attempt_at).where(
                D.channel == channel, D.state.in_([x.value for x in BOOKED_STATES]),
                or_(D.sent_at >= since, D.next_attempt_at >= since)))).all()
        out: dict[str, list[Booking]] = {}
        for did, to, purpose, state, step, body, sent_at, next_at in rows:
            if to not in phones:
                continue
            at = sent_at or next_at or now
            public = purpose == Purpose.PUBLIC
            rank = Step(step).rank if public and step in set(Step) else NEVER_DISPLACED
            out.setdefault(to, []).append(Booking(at, body, rank, did if public and state == DeliveryState.PENDING
                                                  else None))
        return out

    async def _write(self, s: AsyncSession, alert: Alert, rule: PublicRule, ctx: MessageContext,
                     chunk: list[Target], opted: set[str], ledger: Ledger, rank: int, not_after: datetime,
                     now: datetime, counts: dict[str, int]) -> None:
        assert alert.id is not None
        rows: list[dict[str, Any]] = []
        targets: list[dict[str, Any]] = []
        displaced: list[int] = []
        texts: dict[str, str] = {}
        for t in chunk:
            decision = "opted_out"
            if t.phone not in opted:
                body = texts.get(t.shelter)
                if body is None:
                    body = texts[t.shelter] = self._text(ctx, rule, t.shelter)
                d = ledger.plan(now, t.phone, Request(body, rank, not_after))
                decision = {Outcome.SEND: "send", Outcome.DEFERRED: "deferred",
                            Outcome.OVER_BUDGET: "over_budget"}[d.outcome]
                displaced += d.displaced
                if d.at is not None:
                    row = deliveries.new_row(alert.id, None, alert.step, PersonView(0, "", t.phone, "public", t.village_code),
                                             rule.channel, Purpose.PUBLIC, None, body, now,
                                             key=PUBLIC_KEY.format(alert=alert.id, phone=t.phone), to_address=t.phone)
                    row["next_attempt_at"] = d.at
                    rows.append(row)
            counts[decision] = counts.get(decision, 0) + 1
            targets.append({"alert_id": alert.id, "phone": t.phone, "village_code": t.village_code, "kind": t.kind,
                            "decision": decision, "planned_at": now, "delivery_id": None})
        await deliveries.insert_rows(s, rows)
        if rows:
            ids = dict((await s.exec(select(Delivery.to_address, Delivery.id).where(
                Delivery.alert_id == alert.id, Delivery.purpose == Purpose.PUBLIC,
                col(Delivery.to_address).in_([r["to_address"] for r in rows])))).all())
            for target in targets:
                target["delivery_id"] = ids.get(target["phone"])
        await (await s.connection()).execute(insert(PublicTarget), targets)
        if displaced:
            moved = await deliveries.cancel_ids(s, displaced, now, "public_displaced", by_alert=alert.id)
            if moved:
                await (await s.connection()).execute(update(PT).where(PT.c.delivery_id.in_(moved)).values(
                    decision="displaced"))
                counts["displaced"] = counts.get("displaced", 0) + len(moved)

    def _known(self, template: str) -> bool:
        try:
            self.templates.text(template)
        except KeyError:
            return False
        return True

    def _text(self, ctx: MessageContext, rule: PublicRule, shelter: str) -> str:
        template = rule.template if self._known(rule.template) else "public"
        if shelter and self._known(f"{template}_shelter"):
            template = f"{template}_shelter"
        return self.templates.render(template, tag=ctx.tag, sender=ctx.sender, headline=ctx.headline,
                                     step=ctx.step, colour=ctx.colour, instruction=ctx.instruction, area=ctx.area,
                                     shelter=shelter)
