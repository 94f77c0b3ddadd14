"""Loudspeaker dissemination: plan play commands, keep them durably, apply device acks, judge
coverage, and open the manual fallback (鸣锣吹哨/敲门入户) when a speaker stays dark.

The MQTT transport is channels/speaker_mqtt.py; this module is its `SpeakerHandler` and owns
every database row about speakers. Rules it keeps (docs/mqtt.md §6):

- Commands are rows (`speaker_commands`) written before anything is published; the channel
  publishes `pending` rows and they become `sent` only on the broker's PUBACK. A pending row
  whose warning expired is never published (`expired`).
- An alert is planned once: a `speakers_planned` event marks it, so a restart or a second look
  never plans it twice (and the unique (alert, device) index backs that up).
- A village is reached by loudspeaker for a warning when one of its speakers acked `played`
  inside the ack window. Anything else — offline or stale at planning, `failed`, expired, no
  `played` in time — opens one fallback 叫应 call per responsible official and warning.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.speaker_mqtt import DeviceMessage, OutgoingCommand, SpeakerMqtt
from warnd.clock import Clock
from warnd.config import County, SpeakersCfg
from warnd.core.domain import AlertState, AlertStatus, CallState, Colour, PersonView, Purpose
from warnd.core.planner import ancestors
from warnd.core.policy import Policy
from warnd.core.replies import short_code_for
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Event, Speaker, SpeakerCommand
from warnd.engine import events
from warnd.engine.ingest import delivery_row
from warnd.engine.messages import MessageContext
from warnd.engine.roster import RosterCache, RosterSnapshot

log = structlog.get_logger("warnd.speakers")

FALLBACK_SOURCE = "speaker_fallback"
FALLBACK_SUFFIX = "#speaker-fallback"
FALLBACK_TASK = "喇叭未播放，请鸣锣吹哨/敲门入户"
SEND_GRACE = timedelta(minutes=10)  # as the ingestor: until the SMS left, allow this on top
ERROR_BACKOFF_SECONDS = 1.0

DEFAULT_SPEAKER_TEXT = "{tag}{step}：{sender}发布{headline}。{instruction}"
DEFAULT_FALLBACK_TEXT = (
    "{tag}【喇叭未播放】{region}应急广播未能播放{step}“{headline}”。" + FALLBACK_TASK
    + "，落实后回复1确认并报告情况（编号{code}）。"
)

# Device status order; `played` and `failed` are final (a late duplicate changes nothing).
RANK = {"pending": 0, "sent": 1, "received": 2, "playing": 3, "played": 9, "failed": 9}
ACK_STATUSES = ("received", "playing", "played", "failed")
OPEN_STATES = ("sent", "received", "playing")  # published, waiting for `played`
PRIORITY = {Colour.BLUE.value: 1, Colour.YELLOW.value: 2, Colour.ORANGE.value: 3, Colour.RED.value: 4}

SC = SpeakerCommand.__table__  # type: ignore[attr-defined]
SP = Speaker.__table__  # type: ignore[attr-defined]


def village_of(code: str) -> str:
    """The village a speaker serves: its own code, or the village of its group."""
    return code[:12] if len(code) > 12 else code


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_dark(sp: Speaker, now: datetime, stale_after: timedelta) -> str | None:
    """Why a speaker cannot be counted on right now, or None."""
    if sp.online is None:
        return "never_seen"
    if not sp.online:
        return "offline"
    if sp.last_seen_at is None or now - sp.last_seen_at > stale_after:
        return "stale"
    return None


@dataclass
class _Dark:
    device_id: str
    region_code: str
    reason: str
    command_id: int | None = None


class SpeakerService:
    """Plans commands for accepted alerts, feeds the MQTT channel, applies acks, fires ack
    deadlines and opens fallback calls. `run()` is the worker; `channel.run()` the transport."""

    def __init__(self, db: Database, clock: Clock, cfg: SpeakersCfg, county: County, policy: Policy,
                 templates: Templates, roles: Roles, roster: RosterCache,
                 on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.cfg, self.county, self.policy = db, clock, cfg, county, policy
        self.templates, self.roles, self.roster, self.on_change = templates, roles, roster, on_change
        self.wake = asyncio.Event()
        self.channel = SpeakerMqtt(cfg.mqtt(county.code), self)
        self.ack_window = timedelta(seconds=cfg.ack_window_seconds)
        self.ttl = timedelta(seconds=cfg.command_ttl_seconds)
        self.stale_after = timedelta(seconds=cfg.stale_after_seconds)

    def kick(self) -> None:
        self.wake.set()
        self.channel.kick()

    # --- worker -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Plan new alerts, fire due ack deadlines and expiries; sleep until the next one."""
        while True:
            self.wake.clear()
            try:
                planned = await self.plan_new_alerts()
                fired = await self.fire_due() + await self.close_lifted_fallbacks()
                if planned:
                    self.channel.kick()
                if planned or fired:
                    self.on_change()
                nxt = await self.next_due()
            except Exception:
                log.exception("speaker pass failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            # Poll as well: alerts accepted by another process or instance have no kick here.
            nxt_poll = self.clock.now() + timedelta(seconds=2 * getattr(self.clock, "speed", 1.0))
            await self.clock.wait_until(min(nxt, nxt_poll) if nxt else nxt_poll, self.wake)

    async def plan_new_alerts(self) -> int:
        """Plan every active alert at a speaker step that was not planned yet. Returns how many
        commands were created."""
        now = self.clock.now()
        async with self.db.session() as s:
            done = select(Event.alert_id).where(Event.kind == "speakers_planned",
                                                col(Event.alert_id).is_not(None))
            ids = (await s.exec(select(Alert.id).where(
                Alert.state == AlertState.ACTIVE, col(Alert.step).in_(list(self.cfg.steps)),
                Alert.source != FALLBACK_SOURCE, col(Alert.id).not_in(done.scalar_subquery()),
            ).order_by(col(Alert.id)))).all()
        created = 0
        for alert_id in ids:
            if alert_id is not None:
                created += await self.plan_alert(alert_id, now)
        return created

    async def plan_alert(self, alert_id: int, now: datetime | None = None) -> int:
        now = now or self.clock.now()
        roster = await self.roster.get()  # before the write transaction (SQLite: one writer)
        async with self.db.session() as s, s.begin():
            alert = await s.get(Alert, alert_id)
            if alert is None or alert.id is None:
                return 0
            already = (await s.exec(select(func.count()).select_from(Event).where(
                Event.kind == "speakers_planned", Event.alert_id == alert_id))).one()
            if already:
                return 0
            codes = set(alert.region_codes)
            speakers = [sp for sp in (await s.exec(select(Speaker).where(Speaker.active == True))).all()  # noqa: E712
                        if _covered(sp.region_code, codes)]
            expires = now + self.ttl
            if alert.expires is not None:
                expires = min(expires, alert.expires)
            drill = alert.status != AlertStatus.ACTUAL
            rows: list[dict[str, Any]] = []
            dark: list[_Dark] = []
            if expires > now and alert.state == AlertState.ACTIVE:
                text = self._speaker_text(alert)
                for sp in sorted(speakers, key=lambda x: x.device_id):
                    cmd_id = f"w{alert.id}-{uuid.uuid4().hex[:16]}"
                    payload = {
                        "v": 1, "type": "play", "cmd_id": cmd_id, "warning_id": str(alert.id),
                        "warning_ref": f"{alert.sender}|{alert.identifier}", "device_id": sp.device_id,
                        "issued_at": _iso(now), "expires_at": _iso(expires), "drill": drill,
                        "priority": PRIORITY.get(alert.colour, 2), "step": alert.step, "colour": alert.colour,
                        "text": text, "tts": {"voice": self.cfg.voice, "speed": 1.0}, "audio_url": None,
                        "repeat": self.cfg.repeat, "volume": self.cfg.volume,
                    }
                    why = is_dark(sp, now, self.stale_after)
                    rows.append(dict(
                        cmd_id=cmd_id, alert_id=alert.id, device_id=sp.device_id, region_code=sp.region_code,
                        village_code=village_of(sp.region_code), step=alert.step, drill=drill,
                        payload=json.dumps(payload, ensure_ascii=False), state="pending", reason=None,
                        expires_at=expires, deadline=None, created_at=now, sent_at=None, received_at=None,
                        played_at=None, late=False, publish_attempts=0, fallback=why is not None,
                    ))
                    if why is not None:
                        dark.append(_Dark(sp.device_id, sp.region_code, why))
            if rows:
                await (await s.connection()).execute(insert(SpeakerCommand), rows)
            events.record(s, now, "speakers_planned", alert_id=alert.id, commands=len(rows),
                          villages=len({r["village_code"] for r in rows}), dark=len(dark), drill=drill,
                          expires_at=expires.isoformat())
            if dark:
                await self._open_fallbacks(s, alert, dark, roster, now)
        if dark:
            self.on_change()
        return len(rows)

    def _speaker_text(self, alert: Alert) -> str:
        ctx = MessageContext.of(alert, self.templates)
        template = self.templates.sms.get("speaker_text", DEFAULT_SPEAKER_TEXT)
        return _fill(template, tag=ctx.tag, step=ctx.step, sender=ctx.sender, headline=ctx.headline,
                     instruction=alert.instruction.strip(), area=ctx.area, colour=Colour(alert.colour).zh)

    async def fire_due(self) -> int:
        """Ack windows that ran out (→ no_ack) and pending commands that expired unsent
        (→ expired), each with its fallback. Returns how many commands changed."""
        now = self.clock.now()
        async with self.db.session() as s:
            due = (await s.exec(select(SpeakerCommand).where(
                col(SpeakerCommand.state).in_(OPEN_STATES), col(SpeakerCommand.deadline) <= now))).all()
            expired = (await s.exec(select(SpeakerCommand).where(
                SpeakerCommand.state == "pending", col(SpeakerCommand.expires_at) <= now))).all()
            lifted = (await s.exec(select(SpeakerCommand.id).join(Alert, col(Alert.id) == SpeakerCommand.alert_id).where(
                SpeakerCommand.state == "pending", Alert.state != AlertState.ACTIVE))).all()
        if lifted:  # the warning was cancelled or superseded before the broker had it
            async with self.db.session() as s, s.begin():
                await (await s.connection()).execute(update(SC).where(
                    SC.c.id.in_(list(lifted)), SC.c.state == "pending").values(state="cancelled", reason="lifted"))
                events.record(s, now, "speaker_commands_cancelled", count=len(lifted))
        if not due and not expired:
            return len(lifted)
        roster = await self.roster.get()
        changed = 0
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            by_alert: dict[int, list[_Dark]] = defaultdict(list)
            for rows, new, expect in ((due, "no_ack", OPEN_STATES), (expired, "expired", ("pending",))):
                for c in rows:
                    res = await conn.execute(update(SC).where(SC.c.id == c.id, SC.c.state.in_(expect)).values(
                        state=new, reason=new))
                    if res.rowcount != 1:
                        continue
                    changed += 1
                    if not c.fallback:
                        by_alert[c.alert_id].append(_Dark(c.device_id, c.region_code, new, c.id))
            if changed:
                events.record(s, now, "speaker_deadlines", no_ack=len(due), expired=len(expired))
            for alert_id, dark in by_alert.items():
                alert = await s.get(Alert, alert_id)
                if alert is not None and alert.state == AlertState.ACTIVE:
                    await self._open_fallbacks(s, alert, dark, roster, now)
        return changed

    async def close_lifted_fallbacks(self) -> int:
        """The warning was cancelled, superseded or expired: its fallback alert follows it and
        the fallback calls still open are cancelled (fenced, like the engine's own cancel)."""
        async with self.db.session() as s:
            companions = (await s.exec(select(Alert).where(Alert.source == FALLBACK_SOURCE,
                                                           Alert.state == AlertState.ACTIVE))).all()
            lifted: list[tuple[int, str]] = []
            for comp in companions:
                sender, ident = comp.sender, comp.identifier.removesuffix(FALLBACK_SUFFIX)
                state = (await s.exec(select(Alert.state).where(Alert.sender == sender,
                                                                Alert.identifier == ident))).first()
                if comp.id is not None and state is not None and state != AlertState.ACTIVE:
                    lifted.append((comp.id, state))
        if not lifted:
            return 0
        now = self.clock.now()
        closed = 0
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            for comp_id, state in lifted:
                await conn.execute(update(Alert).where(col(Alert.id) == comp_id).values(state=state))
                res = await conn.execute(update(Call).where(
                    col(Call.alert_id) == comp_id, col(Call.state).in_([CallState.OPEN, CallState.DUTY_ROOM])
                ).values(state=CallState.CANCELLED.value, deadline=None, fence=Call.fence + 1))
                await conn.execute(update(Delivery).where(
                    col(Delivery.alert_id) == comp_id, col(Delivery.state) == "pending").values(state="cancelled"))
                closed += res.rowcount
                events.record(s, now, "speaker_fallback_closed", alert_id=comp_id, state=state,
                              calls_cancelled=res.rowcount)
        return closed

    async def next_due(self) -> datetime | None:
        async with self.db.session() as s:
            a = (await s.exec(select(func.min(SpeakerCommand.deadline)).where(
                col(SpeakerCommand.state).in_(OPEN_STATES)))).one()
            b = (await s.exec(select(func.min(SpeakerCommand.expires_at)).where(
                SpeakerCommand.state == "pending"))).one()
        found = [t for t in (a, b) if t is not None]
        return min(found) if found else None

    # --- SpeakerHandler (the channel's side) ----------------------------------------------------

    async def pending(self, limit: int) -> Sequence[OutgoingCommand]:
        now = self.clock.now()
        speed = float(getattr(self.clock, "speed", 1.0))
        async with self.db.session() as s:
            rows = (await s.exec(select(SpeakerCommand.id, SpeakerCommand.device_id, SpeakerCommand.payload,
                                        SpeakerCommand.expires_at).join(Alert, col(Alert.id) == SpeakerCommand.alert_id).where(
                SpeakerCommand.state == "pending", col(SpeakerCommand.expires_at) > now,
                Alert.state == AlertState.ACTIVE).order_by(col(SpeakerCommand.id)).limit(limit))).all()
        return [OutgoingCommand(key=i, device_id=d, payload=p.encode(),
                                expiry_seconds=max(1, math.ceil((e - now).total_seconds() / speed)))
                for i, d, p, e in rows if i is not None]

    async def published(self, keys: Sequence[int]) -> None:
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            await conn.execute(update(SC).where(SC.c.id.in_(list(keys)), SC.c.state == "pending").values(
                state="sent", sent_at=now, deadline=now + self.ack_window,
                publish_attempts=SC.c.publish_attempts + 1))
            # Acked before we recorded the PUBACK: the window still starts now.
            await conn.execute(update(SC).where(SC.c.id.in_(list(keys)), SC.c.deadline.is_(None)).values(
                deadline=now + self.ack_window, publish_attempts=SC.c.publish_attempts + 1))
            events.record(s, now, "speaker_commands_published", count=len(keys))
        self.wake.set()  # new deadlines

    async def on_messages(self, msgs: Sequence[DeviceMessage]) -> None:
        now = self.clock.now()
        seen: dict[str, dict[str, Any]] = {}
        acks: list[DeviceMessage] = []
        for m in msgs:
            upd = seen.setdefault(m.device_id, {})
            if not m.retained:  # a retained copy is old news: it says nothing about now
                upd["last_seen_at"] = now
            if m.kind == "state" and isinstance(m.data.get("online"), bool):
                upd.update(online=m.data["online"], state_reason=str(m.data.get("reason") or "")[:32] or None,
                           state_at=now)
            elif m.kind == "hb":
                upd.update(online=True)
            elif m.kind == "ack":
                acks.append(m)
        fallback_needed = any(m.data.get("status") == "failed" for m in acks)
        roster = await self.roster.get() if fallback_needed else None
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            await self._apply_seen(conn, seen)
            if acks:
                await self._apply_acks(s, acks, now, roster)
        self.wake.set()

    async def _apply_seen(self, conn: Any, seen: dict[str, dict[str, Any]]) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for device_id, values in seen.items():
            if values:
                groups[tuple(sorted(values))].append({"did": device_id, **{f"v_{k}": v for k, v in values.items()}})
        for keys, params in groups.items():
            await conn.execute(update(SP).where(SP.c.device_id == bindparam("did")).values(
                {k: bindparam(f"v_{k}") for k in keys}), params)

    async def _apply_acks(self, s: AsyncSession, acks: list[DeviceMessage], now: datetime,
                          roster: RosterSnapshot | None) -> None:
        """Apply a batch of acks: per command only its most advanced status counts (a batch may
        hold received, playing and played of one device), written with one executemany per
        kind of change, each row compare-and-swapped on the state it was read in."""
        id_list = sorted({str(m.data.get("cmd_id")) for m in acks})
        cmds: dict[str, SpeakerCommand] = {}
        for i in range(0, len(id_list), 5000):
            for c in (await s.exec(select(SpeakerCommand).where(
                    col(SpeakerCommand.cmd_id).in_(id_list[i:i + 5000])))).all():
                cmds[c.cmd_id] = c
        best: dict[str, tuple[str, DeviceMessage]] = {}
        for m in acks:
            status = m.data.get("status")
            found = cmds.get(str(m.data.get("cmd_id")))
            if found is None or found.device_id != m.device_id or status not in ACK_STATUSES:
                # Retained acks of commands this database never sent (another installation, a
                # wiped database) arrive on every subscribe: not worth a warning.
                (log.debug if m.retained else log.warning)(
                    "ignored ack", device=m.device_id, cmd_id=m.data.get("cmd_id"), status=status)
                continue
            prev = best.get(found.cmd_id)
            if prev is None or RANK[status] > RANK[prev[0]]:
                best[found.cmd_id] = (status, m)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        dark: dict[int, list[_Dark]] = defaultdict(list)
        for cmd_id, (status, m) in best.items():
            cmd = cmds[cmd_id]
            cur = cmd.state
            if cur in ("played", "failed", "cancelled", "expired"):
                continue  # final (a repeat, or a retained copy after our restart)
            if cur == "no_ack" and status not in ("played", "failed"):
                continue
            if cur != "no_ack" and RANK[status] <= RANK.get(cur, 0):
                continue
            values: dict[str, Any] = {"state": status}
            if cmd.received_at is None:
                values["received_at"] = now
            if cmd.sent_at is None:  # acked before we recorded the PUBACK: the window starts now
                values["sent_at"] = now
            if cmd.deadline is None:
                values["deadline"] = now + self.ack_window
            final = status in ("played", "failed")
            if status == "played":
                values["played_at"] = now
                values["late"] = cur == "no_ack" or (cmd.deadline is not None and now > cmd.deadline)
            if status == "failed":
                values["reason"] = str(m.data.get("reason") or "other")[:32]
            groups[(str(final), *sorted(values))].append(
                {"b_id": cmd.id, "b_cur": cur, **{f"v_{k}": v for k, v in values.items()}})
            if final:
                events.record(s, now, f"speaker_{status}", alert_id=cmd.alert_id, device=cmd.device_id,
                              village=cmd.village_code, cmd_id=cmd.cmd_id, reason=values.get("reason"),
                              late=bool(values.get("late")))
            if status == "failed" and cur != "no_ack" and not cmd.fallback:
                dark[cmd.alert_id].append(_Dark(cmd.device_id, cmd.region_code, f"failed:{values['reason']}", cmd.id))
        conn = await s.connection()
        for (final_text, *keys), params in groups.items():
            # A concurrent deadline may have moved a row to no_ack: a final status still lands.
            allowed = [bindparam("b_cur"), "no_ack"] if final_text == "True" else [bindparam("b_cur")]
            await conn.execute(update(SC).where(SC.c.id == bindparam("b_id"), SC.c.state.in_(allowed)).values(
                {k: bindparam(f"v_{k}") for k in keys}), params)
        if dark and roster is not None:
            for alert_id, items in dark.items():
                alert = await s.get(Alert, alert_id)
                if alert is not None and alert.state == AlertState.ACTIVE:
                    await self._open_fallbacks(s, alert, items, roster, now)
            self.on_change()

    # --- fallback ---------------------------------------------------------------------------------

    def fallback_official(self, region_code: str, roster: RosterSnapshot) -> PersonView | None:
        """Nearest region first, then the first role in `fallback_roles` that has someone."""
        for code in [region_code, *ancestors(region_code, roster.regions)]:
            for role in self.cfg.fallback_roles:
                found = roster.index.at(code, role)
                if found:
                    return found[0]
        return None

    async def _companion(self, s: AsyncSession, alert: Alert, now: datetime) -> Alert:
        ident = f"{alert.identifier}{FALLBACK_SUFFIX}"
        row = (await s.exec(select(Alert).where(Alert.sender == alert.sender, Alert.identifier == ident))).first()
        if row is not None:
            return row
        row = Alert(
            sender=alert.sender, identifier=ident, sent=alert.sent, status=alert.status, msg_type="Alert",
            references=[[alert.sender, alert.identifier, alert.sent.isoformat()]], source=FALLBACK_SOURCE,
            hazard=alert.hazard, colour=alert.colour, step=alert.step, event=alert.event,
            sender_name=alert.sender_name, headline=alert.headline, description=alert.description,
            instruction=FALLBACK_TASK, area_desc=alert.area_desc, onset=alert.onset, expires=alert.expires,
            region_codes=[], unknown_codes=[], state=AlertState.ACTIVE, supersedes_id=None, received_at=now,
            raw_xml="",
        )
        s.add(row)
        await s.flush()
        events.record(s, now, "speaker_fallback_opened", alert_id=row.id, for_alert=alert.id)
        return row

    async def _open_fallbacks(self, s: AsyncSession, alert: Alert, dark: Iterable[_Dark],
                              roster: RosterSnapshot, now: datetime) -> int:
        """One 叫应 call per responsible official of the dark speakers' places."""
        dark = list(dark)
        if not dark:
            return 0
        assert alert.id is not None
        companion = await self._companion(s, alert, now)
        assert companion.id is not None
        existing = set((await s.exec(select(Call.person_id).where(Call.alert_id == companion.id))).all())
        conn = await s.connection()
        ctx = MessageContext.of(alert, self.templates)
        template = self.templates.sms.get("speaker_fallback", DEFAULT_FALLBACK_TEXT)
        window = timedelta(minutes=self.cfg.fallback_confirm_minutes)
        ladder = self.cfg.fallback_ladder if self.cfg.fallback_ladder in self.policy.ladders else next(iter(self.policy.ladders))
        opened = 0
        villages = set(companion.region_codes)
        for d in dark:
            villages.add(village_of(d.region_code))
            official = self.fallback_official(d.region_code, roster)
            if official is None:
                events.record(s, now, "speaker_fallback_gap", alert_id=alert.id, device=d.device_id,
                              region=d.region_code, reason=d.reason)
                continue
            if official.id in existing:
                events.record(s, now, "speaker_fallback", alert_id=alert.id, person_id=official.id,
                              device=d.device_id, region=d.region_code, reason=d.reason, call="existing")
                continue
            res = await conn.execute(insert(Call).returning(col(Call.id)), [dict(
                alert_id=companion.id, person_id=official.id, step=alert.step, role=official.role,
                region_code=official.region_code, ladder=ladder, channels=list(self.cfg.fallback_channels),
                state=CallState.OPEN.value, level=0, fence=0, short_code="", created_at=now,
                deadline=now + window + SEND_GRACE, window_seconds=int(window.total_seconds()),
                confirmed_at=None, confirmed_via=None, confirmed_by_id=None, note=None)])
            cid = res.scalar_one()
            assert cid is not None
            code = short_code_for(cid)
            await conn.execute(update(Call).where(col(Call.id) == cid).values(short_code=code))
            region = roster.regions.get(village_of(d.region_code))
            body = _fill(template, tag=ctx.tag, step=ctx.step, sender=ctx.sender, headline=ctx.headline,
                         region=region.name if region else d.region_code, code=code, name=official.name,
                         area=ctx.area, colour=Colour(alert.colour).zh, instruction=FALLBACK_TASK)
            rows = [delivery_row(companion.id, cid, alert.step, official, ch, Purpose.WARNING, 0, body, now)
                    for ch in self.cfg.fallback_channels]
            await conn.execute(insert(Delivery), rows)
            existing.add(official.id)
            opened += 1
            events.record(s, now, "speaker_fallback", alert_id=alert.id, call_id=cid, person_id=official.id,
                          device=d.device_id, region=d.region_code, reason=d.reason, call="opened")
        ids = [d.command_id for d in dark if d.command_id is not None]
        if ids:
            await conn.execute(update(SC).where(SC.c.id.in_(ids)).values(fallback=True))
        companion.region_codes = sorted(villages)
        s.add(companion)
        return opened


def _covered(code: str, codes: set[str]) -> bool:
    return code in codes or any(code[:n] in codes for n in (6, 9, 12) if n < len(code))


class _Defaults(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: str, **values: object) -> str:
    return template.format_map(_Defaults(values))


# --- reports ---------------------------------------------------------------------------------------


@dataclass
class SpeakerCoverage:
    """Loudspeaker coverage of one warning (or of all warnings at one step)."""

    alert_ids: list[int] = field(default_factory=list)
    devices: int = 0
    played: int = 0  # inside the ack window
    late: int = 0  # played after the window (not counted as reached)
    failed: int = 0
    no_ack: int = 0
    expired: int = 0
    in_flight: int = 0  # pending, sent, received, playing
    villages: int = 0
    villages_reached: int = 0
    not_reached: list[str] = field(default_factory=list)  # village codes
    fallback_calls: int = 0
    fallback_confirmed: int = 0

    @property
    def village_ratio(self) -> float:
        return self.villages_reached / self.villages if self.villages else 0.0


async def speaker_coverage(db: Database, alert_id: int | None = None, step: str | None = None) -> SpeakerCoverage:
    """Coverage of one alert, or of every alert at `step`, or of everything. Villages are
    counted per warning (a village in two warnings counts twice)."""
    async with db.session() as s:
        q = select(SpeakerCommand.alert_id, SpeakerCommand.village_code, SpeakerCommand.state, SpeakerCommand.late)
        if alert_id is not None:
            q = q.where(SpeakerCommand.alert_id == alert_id)
        if step is not None:
            q = q.where(SpeakerCommand.step == step)
        rows = (await s.exec(q)).all()
        alert_ids = sorted({a for a, _, _, _ in rows})
        if alert_id is not None and alert_id not in alert_ids:
            alert_ids.append(alert_id)
        fallback_calls = fallback_confirmed = 0
        if alert_ids:
            originals = (await s.exec(select(Alert.sender, Alert.identifier).where(col(Alert.id).in_(alert_ids)))).all()
            idents = [f"{i}{FALLBACK_SUFFIX}" for _, i in originals]
            comp_ids = (await s.exec(select(Alert.id).where(Alert.source == FALLBACK_SOURCE,
                                                            col(Alert.identifier).in_(idents)))).all()
            if comp_ids:
                states = (await s.exec(select(Call.state).where(col(Call.alert_id).in_(comp_ids)))).all()
                fallback_calls = len(states)
                fallback_confirmed = sum(1 for st in states if st == CallState.CONFIRMED)
    cov = SpeakerCoverage(alert_ids=alert_ids, fallback_calls=fallback_calls, fallback_confirmed=fallback_confirmed)
    reached: dict[tuple[int, str], bool] = {}
    for a, village, state, late in rows:
        cov.devices += 1
        key = (a, village)
        reached.setdefault(key, False)
        if state == "played" and not late:
            cov.played += 1
            reached[key] = True
        elif state == "played":
            cov.late += 1
        elif state == "failed":
            cov.failed += 1
        elif state == "no_ack":
            cov.no_ack += 1
        elif state == "expired":
            cov.expired += 1
        elif state != "cancelled":
            cov.in_flight += 1
    cov.villages = len(reached)
    cov.villages_reached = sum(reached.values())
    cov.not_reached = sorted({v for (_, v), ok in reached.items() if not ok})
    return cov


async def coverage_by_step(db: Database) -> dict[str, SpeakerCoverage]:
    async with db.session() as s:
        steps = (await s.exec(select(SpeakerCommand.step).distinct())).all()
    return {st: await speaker_coverage(db, step=st) for st in sorted(steps)}


@dataclass
class FleetHealth:
    total: int = 0
    online: int = 0
    offline: int = 0
    stale: int = 0
    never_seen: int = 0
    dark: list[tuple[str, str, str]] = field(default_factory=list)  # (device, region, why)


async def fleet_health(db: Database, now: datetime, stale_after_seconds: float = 180) -> FleetHealth:
    async with db.session() as s:
        speakers = (await s.exec(select(Speaker).where(Speaker.active == True))).all()  # noqa: E712
    h = FleetHealth(total=len(speakers))
    for sp in speakers:
        why = is_dark(sp, now, timedelta(seconds=stale_after_seconds))
        if why is None:
            h.online += 1
            continue
        setattr(h, why, getattr(h, why) + 1)
        h.dark.append((sp.device_id, sp.region_code, why))
    h.dark.sort()
    return h
