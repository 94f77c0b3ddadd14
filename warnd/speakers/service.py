"""Loudspeaker dissemination, the I/O half: plan play commands, keep them durably, apply
device acks, fire ack deadlines, and open the manual fallback (鸣锣吹哨/敲门入户) when a
speaker stays dark. The decisions are pure (warnd.core.speakers); the MQTT transport is
channels/speaker_mqtt.py, whose `SpeakerHandler` this is. Rules it keeps (docs/mqtt.md §6):

- Commands are rows (`speaker_commands`, owned here) written before anything is published;
  the channel publishes `pending` rows and they become `sent` only on the broker's PUBACK. A
  pending row whose warning expired is never published (`expired`).
- An alert is planned once: a `speakers_planned` event marks it, so a restart or a second look
  never plans it twice (and the unique (alert, device) index backs that up).
- A village is reached by loudspeaker for a warning when one of its speakers acked `played`
  inside the ack window. Anything else — offline or stale at planning, `failed`, expired, no
  `played` in time — opens one fallback 叫应 call per responsible official and warning, on a
  fallback alert linked to the warning (`alerts.fallback_for_id`) that follows it when the
  warning is lifted.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.speaker_mqtt import DeviceMessage, OutgoingCommand, SpeakerMqtt
from warnd.clock import Clock
from warnd.config import County, SpeakersCfg
from warnd.core import speakers as decide
from warnd.core.domain import (
    AlertState,
    AlertStatus,
    CommandState,
    PersonView,
    PlannedCall,
    Purpose,
)
from warnd.core.planner import nearest_holders
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Event, Speaker, SpeakerCommand
from warnd.engine import alerts, calls, deliveries, events
from warnd.engine.messages import Composer
from warnd.engine.module import ModuleBase
from warnd.engine.roster import RosterCache, RosterSnapshot

log = structlog.get_logger("warnd.speakers")

FALLBACK_SOURCE = "speaker_fallback"
FALLBACK_SUFFIX = "#speaker-fallback"  # keeps (sender, identifier) unique; the link is fallback_for_id
FALLBACK_TASK = "喇叭未播放，请鸣锣吹哨/敲门入户"

SC = SpeakerCommand.__table__  # type: ignore[attr-defined]
SP = Speaker.__table__  # type: ignore[attr-defined]




@dataclass
class _Dark:
    device_id: str
    region_code: str
    reason: str
    command_id: int | None = None


class SpeakerService(ModuleBase):
    """The loudspeaker engine module (plan new alerts, fire ack deadlines and expiries, close
    fallbacks of lifted warnings) and the MQTT channel's handler. `channel.run()` is the
    transport, run beside the module by the composition root."""

    name = "speakers"

    def __init__(self, db: Database, clock: Clock, cfg: SpeakersCfg, county: County, policy: Policy,
                 templates: Templates, roles: Roles, roster: RosterCache,
                 on_change: Callable[[], None] = lambda: None, *, instance: str = ""):
        super().__init__()
        self.db, self.clock, self.cfg, self.county, self.policy = db, clock, cfg, county, policy
        self.templates, self.roles, self.roster, self.on_change = templates, roles, roster, on_change
        self.channel = SpeakerMqtt(cfg.mqtt(county.code, instance), self)
        self.ack_window = timedelta(seconds=cfg.ack_window_seconds)
        self.ttl = timedelta(seconds=cfg.command_ttl_seconds)
        self.stale_after = timedelta(seconds=cfg.stale_after_seconds)
        self.style = decide.PlayStyle(voice=cfg.voice, repeat=cfg.repeat, volume=cfg.volume)

    def kick(self) -> None:
        self.wake.set()
        self.channel.kick()

    # --- the module contract -------------------------------------------------------------

    @property
    def poll_seconds(self) -> float | None:  # type: ignore[override]
        # Alerts accepted by another process or instance send no wake: look again every 2 s
        # of clock time (faster under a scaled clock, so drills keep their pace).
        return 2.0

    async def step(self) -> bool:
        planned = await self.plan_new_alerts()
        fired = await self.fire_due() + await self.close_lifted_fallbacks()
        if planned:
            self.channel.kick()
        if planned or fired:
            self.on_change()
        return False  # each part drains what is due; new work arrives by wake or poll

    async def next_due(self) -> datetime | None:
        async with self.db.read() as s:
            a = (await s.exec(select(func.min(SpeakerCommand.deadline)).where(
                col(SpeakerCommand.state).in_([st.value for st in decide.WAITING])))).one()
            b = (await s.exec(select(func.min(SpeakerCommand.expires_at)).where(
                SpeakerCommand.state == CommandState.PENDING))).one()
        found = [t for t in (a, b) if t is not None]
        return min(found) if found else None

    # --- planning ------------------------------------------------------------------------

    async def plan_new_alerts(self) -> int:
        """Plan every active alert at a speaker step that was not planned yet. Returns how many
        commands were created."""
        now = self.clock.now()
        async with self.db.read() as s:
            done = select(Event.alert_id).where(Event.kind == "speakers_planned", col(Event.alert_id).is_not(None))
            ids = (await s.exec(select(Alert.id).where(
                Alert.state == AlertState.ACTIVE, col(Alert.step).in_(list(self.cfg.steps)),
                col(Alert.fallback_for_id).is_(None), Alert.source != FALLBACK_SOURCE,
                col(Alert.id).not_in(done.scalar_subquery()),
            ).order_by(col(Alert.id)))).all()
        created = 0
        for alert_id in ids:
            if alert_id is not None:
                created += await self.plan_alert(alert_id, now)
        return created

    def speaker_text(self, alert: Alert, roster: RosterSnapshot | None = None) -> str:
        ctx = Composer(self.templates, self.roles, None, policy=self.policy,
                       regions=roster.regions if roster is not None else None).context(alert)
        own = (alert.channel_texts or {}).get("speaker")
        if own:  # a GB/T message's SPEAKER text: read as the producer wrote it
            ctx = ctx.with_channel_text(str(own))
        return self.templates.render("speaker_text", tag=ctx.tag, step=ctx.step, sender=ctx.sender,
                                     headline=ctx.headline, instruction=ctx.instruction, area=ctx.area,
                                     colour=ctx.colour)

    async def plan_alert(self, alert_id: int, now: datetime | None = None) -> int:
        now = now or self.clock.now()
        roster = await self.roster.get()  # before the write transaction (SQLite: one writer)
        async with self.db.session() as s, s.begin():
            # Locked: another instance planning the same alert (PostgreSQL) makes this one
            # skip it; once it commits, its `speakers_planned` event is seen below.
            alert = (await s.exec(select(Alert).where(Alert.id == alert_id).with_for_update(skip_locked=True))).first()
            if alert is None or alert.id is None:
                return 0
            already = (await s.exec(select(func.count()).select_from(Event).where(
                Event.kind == "speakers_planned", Event.alert_id == alert_id))).one()
            if already:
                return 0
            codes = set(alert.region_codes)
            speakers = [sp for sp in (await s.exec(select(Speaker).where(Speaker.active == True))).all()  # noqa: E712
                        if decide.covered(sp.region_code, codes)]
            expires = now + self.ttl
            if alert.expires is not None:
                expires = min(expires, alert.expires)
            drill = alert.status != AlertStatus.ACTUAL
            rows: list[dict[str, Any]] = []
            dark: list[_Dark] = []
            if expires > now and alert.state == AlertState.ACTIVE:
                text = self.speaker_text(alert, roster)
                for sp in sorted(speakers, key=lambda x: x.device_id):
                    cmd_id = f"w{alert.id}-{uuid.uuid4().hex[:16]}"
                    payload = decide.play_payload(
                        cmd_id=cmd_id, alert_id=alert.id, warning_ref=f"{alert.sender}|{alert.identifier}",
                        device_id=sp.device_id, issued_at=now, expires_at=expires, drill=drill,
                        colour=alert.colour, step=alert.step, text=text, style=self.style)
                    why = decide.darkness(sp.online, sp.last_seen_at, now, self.stale_after, sp.hb_interval_s)
                    rows.append(dict(
                        cmd_id=cmd_id, alert_id=alert.id, device_id=sp.device_id, region_code=sp.region_code,
                        village_code=decide.village_of(sp.region_code), step=alert.step, drill=drill,
                        payload=json.dumps(payload, ensure_ascii=False), state=CommandState.PENDING.value,
                        reason=None, expires_at=expires, deadline=None, created_at=now, sent_at=None,
                        received_at=None, played_at=None, late=False, publish_attempts=0, fallback=why is not None,
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

    # --- deadlines -----------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Ack windows that ran out (→ no_ack) and pending commands that expired unsent
        (→ expired), each with its fallback; pending commands of lifted warnings are
        cancelled. Returns how many commands changed."""
        now = self.clock.now()
        async with self.db.read() as s:
            due = (await s.exec(select(SpeakerCommand).where(
                col(SpeakerCommand.state).in_([st.value for st in decide.WAITING]),
                col(SpeakerCommand.deadline) <= now))).all()
            expired = (await s.exec(select(SpeakerCommand).where(
                SpeakerCommand.state == CommandState.PENDING, col(SpeakerCommand.expires_at) <= now))).all()
            lifted = (await s.exec(select(SpeakerCommand.id).join(Alert, col(Alert.id) == SpeakerCommand.alert_id).where(
                SpeakerCommand.state == CommandState.PENDING, Alert.state != AlertState.ACTIVE))).all()
        if lifted:  # the warning was cancelled or superseded before the broker had it
            async with self.db.session() as s, s.begin():
                await (await s.connection()).execute(update(SC).where(
                    SC.c.id.in_(list(lifted)), SC.c.state == CommandState.PENDING.value).values(
                    state=CommandState.CANCELLED.value, reason="lifted"))
                events.record(s, now, "speaker_commands_cancelled", count=len(lifted))
        if not due and not expired:
            return len(lifted)
        roster = await self.roster.get()
        changed = 0
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            by_alert: dict[int, list[_Dark]] = defaultdict(list)
            for rows, new, expect in ((due, CommandState.NO_ACK, decide.WAITING),
                                      (expired, CommandState.EXPIRED, (CommandState.PENDING,))):
                for c in rows:
                    res = await conn.execute(update(SC).where(
                        SC.c.id == c.id, SC.c.state.in_([st.value for st in expect])).values(
                        state=new.value, reason=new.value))
                    if res.rowcount != 1:
                        continue
                    changed += 1
                    if not c.fallback:
                        by_alert[c.alert_id].append(_Dark(c.device_id, c.region_code, new.value, c.id))
            if changed:
                events.record(s, now, "speaker_deadlines", no_ack=len(due), expired=len(expired))
            for alert_id, dark in by_alert.items():
                alert = await s.get(Alert, alert_id)
                if alert is not None and alert.state == AlertState.ACTIVE:
                    await self._open_fallbacks(s, alert, dark, roster, now)
        return changed

    async def close_lifted_fallbacks(self) -> int:
        """The warning was cancelled, superseded or expired: its fallback alert follows it (the
        engine's lift: open fallback calls cancelled, pending messages cancelled)."""
        async with self.db.read() as s:
            companions = (await s.exec(select(Alert.id, Alert.fallback_for_id).where(
                col(Alert.fallback_for_id).is_not(None), Alert.state == AlertState.ACTIVE))).all()
            parents = dict((await s.exec(select(Alert.id, Alert.state).where(
                col(Alert.id).in_([p for _, p in companions])))).all()) if companions else {}
        lifted = [(cid, parents[pid]) for cid, pid in companions
                  if cid is not None and pid in parents and parents[pid] != AlertState.ACTIVE]
        if not lifted:
            return 0
        now = self.clock.now()
        closed = 0
        async with self.db.session() as s, s.begin():
            for comp_id, state in lifted:
                comp = await s.get(Alert, comp_id)
                if comp is None:
                    continue
                done = await alerts.lift(s, comp, AlertState(state), now, reason=f"warning {state}", roster=None,
                                         composer=None, event="speaker_fallback_closed", state=state)
                if done is not None:
                    closed += done[0]
        return closed

    # --- SpeakerHandler (the channel's side) ---------------------------------------------

    async def pending(self, limit: int) -> Sequence[OutgoingCommand]:
        now = self.clock.now()
        speed = float(getattr(self.clock, "speed", 1.0))
        async with self.db.read() as s:
            rows = (await s.exec(select(SpeakerCommand.id, SpeakerCommand.device_id, SpeakerCommand.payload,
                                        SpeakerCommand.expires_at).join(Alert, col(Alert.id) == SpeakerCommand.alert_id).where(
                SpeakerCommand.state == CommandState.PENDING, col(SpeakerCommand.expires_at) > now,
                Alert.state == AlertState.ACTIVE).order_by(col(SpeakerCommand.id)).limit(limit))).all()
        out = [OutgoingCommand(key=i, device_id=d, payload=p.encode(),
                               expiry_seconds=max(1, math.ceil((e - now).total_seconds() / speed)))
               for i, d, p, e in rows if i is not None]
        return out + await self._stops(now, speed, limit - len(out))

    async def _stops(self, now: datetime, speed: float, limit: int) -> list[OutgoingCommand]:
        """Stop commands owed: the warning was cancelled while the device had its play command
        (published, maybe playing). Keyed by the negative row id (see `published`)."""
        if limit <= 0:
            return []
        async with self.db.read() as s:
            rows = (await s.exec(select(SpeakerCommand).join(
                Alert, col(Alert.id) == SpeakerCommand.alert_id).where(
                Alert.state == AlertState.CANCELLED, col(SpeakerCommand.state).in_(
                    [CommandState.SENT.value, CommandState.RECEIVED.value, CommandState.PLAYING.value]),
                col(SpeakerCommand.stop_sent_at).is_(None), col(SpeakerCommand.expires_at) > now,
            ).order_by(col(SpeakerCommand.id)).limit(limit))).all()
        return [OutgoingCommand(
            key=-c.id, device_id=c.device_id, expiry_seconds=max(1, math.ceil((c.expires_at - now).total_seconds() / speed)),
            payload=json.dumps(decide.stop_payload(cmd_id=c.cmd_id, alert_id=c.alert_id, device_id=c.device_id,
                                                   issued_at=now, expires_at=c.expires_at), ensure_ascii=False).encode())
            for c in rows if c.id is not None]

    async def published(self, keys: Sequence[int]) -> None:
        now = self.clock.now()
        stops = [-k for k in keys if k < 0]
        keys = [k for k in keys if k > 0]
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            if stops:  # the device has been told to drop it: the play command ends here
                await conn.execute(update(SC).where(SC.c.id.in_(stops), SC.c.stop_sent_at.is_(None)).values(
                    stop_sent_at=now, state=CommandState.CANCELLED.value, reason="stopped"))
                events.record(s, now, "speaker_stops_published", count=len(stops))
            if not keys:
                return
            await conn.execute(update(SC).where(SC.c.id.in_(list(keys)), SC.c.state == CommandState.PENDING.value).values(
                state=CommandState.SENT.value, sent_at=now, deadline=now + self.ack_window,
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
                if isinstance(m.data.get("hb_interval_s"), int):  # advertised on every connect (§4)
                    upd.update(hb_interval_s=m.data["hb_interval_s"])
            elif m.kind == "hb":
                upd.update(online=True)
            elif m.kind == "ack":
                acks.append(m)
                if not m.retained:  # any fresh ack is a sign of life, whatever it reports
                    upd.update(online=True)
        # A failure opens a fallback; a play may close one (the roster says whose it is).
        fallback_needed = any(m.data.get("status") in (CommandState.FAILED, CommandState.PLAYED) for m in acks)
        roster = await self.roster.get() if fallback_needed else None
        opened = False
        async with self.db.session() as s, s.begin():
            conn = await s.connection()
            await self._apply_seen(conn, seen)
            if acks:
                opened = await self._apply_acks(s, acks, now, roster)
        if opened:
            self.on_change()  # after the commit: the outbox must find the fallback messages
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
                          roster: RosterSnapshot | None) -> bool:
        """Apply a batch of acks (decided by warnd.core.speakers.ack_values), written with one
        executemany per kind of change, each row compare-and-swapped on the state it was read in."""
        id_list = sorted({str(m.data.get("cmd_id")) for m in acks})
        cmds: dict[str, SpeakerCommand] = {}
        for i in range(0, len(id_list), 5000):
            for c in (await s.exec(select(SpeakerCommand).where(
                    col(SpeakerCommand.cmd_id).in_(id_list[i:i + 5000])))).all():
                cmds[c.cmd_id] = c
        valid: list[tuple[str, CommandState]] = []
        reasons: dict[str, str] = {}
        for m in acks:
            status = m.data.get("status")
            found = cmds.get(str(m.data.get("cmd_id")))
            if found is None or found.device_id != m.device_id or status not in decide.ACK_STATUSES:
                # Retained acks of commands this database never sent (another installation, a
                # wiped database) arrive on every subscribe: not worth a warning.
                (log.debug if m.retained else log.warning)(
                    "ignored ack", device=m.device_id, cmd_id=m.data.get("cmd_id"), status=status)
                continue
            valid.append((found.cmd_id, CommandState(status)))
            if status == CommandState.FAILED:
                reasons[found.cmd_id] = str(m.data.get("reason") or "other")
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        dark: dict[int, list[_Dark]] = defaultdict(list)
        reached: dict[int, list[SpeakerCommand]] = defaultdict(list)  # dark at planning, then played in time
        for cmd_id, status in decide.best_acks(valid).items():
            cmd = cmds[cmd_id]
            view = decide.CommandView(CommandState(cmd.state), cmd.sent_at, cmd.received_at, cmd.deadline, cmd.fallback)
            values = decide.ack_values(view, status, now, self.ack_window, reasons.get(cmd_id))
            if values is None:
                continue
            final = status in (CommandState.PLAYED, CommandState.FAILED)
            groups[(str(final), *sorted(values))].append(
                {"b_id": cmd.id, "b_cur": cmd.state, **{f"v_{k}": v for k, v in values.items()}})
            if final:
                events.record(s, now, f"speaker_{status.value}", alert_id=cmd.alert_id, device=cmd.device_id,
                              village=cmd.village_code, cmd_id=cmd.cmd_id, reason=values.get("reason"),
                              late=bool(values.get("late")))
            if status == CommandState.PLAYED and cmd.fallback and not values.get("late"):
                reached[cmd.alert_id].append(cmd)
            if decide.needs_fallback(view, status):
                dark[cmd.alert_id].append(_Dark(cmd.device_id, cmd.region_code, f"failed:{values['reason']}", cmd.id))
        conn = await s.connection()
        for (final_text, *keys), params in groups.items():
            # A concurrent deadline may have moved a row to no_ack: a final status still lands.
            allowed = ([bindparam("b_cur"), CommandState.NO_ACK.value] if final_text == "True"
                       else [bindparam("b_cur")])
            await conn.execute(update(SC).where(SC.c.id == bindparam("b_id"), SC.c.state.in_(allowed)).values(
                {k: bindparam(f"v_{k}") for k in keys}), params)
        if reached and roster is not None:
            await self._close_reached_fallbacks(s, reached, roster, now)
        opened = 0
        if dark and roster is not None:
            for alert_id, items in dark.items():
                alert = await s.get(Alert, alert_id)
                if alert is not None and alert.state == AlertState.ACTIVE:
                    opened += await self._open_fallbacks(s, alert, items, roster, now)
        return opened > 0

    # --- fallback ------------------------------------------------------------------------

    async def _close_reached_fallbacks(self, s: AsyncSession, reached: dict[int, list[SpeakerCommand]],
                                       roster: RosterSnapshot, now: datetime) -> int:
        """A speaker that was dark at planning played inside its ack window after all: the
        fallback call it opened (鸣锣吹哨/敲门入户) is closed, unless the same official still has
        another dark speaker of this warning that has not played."""
        closed = 0
        for alert_id, cmds in reached.items():
            companion = (await s.exec(select(Alert.id).where(Alert.fallback_for_id == alert_id))).first()
            if companion is None:
                continue
            still_dark = (await s.exec(select(SpeakerCommand.region_code).where(
                SpeakerCommand.alert_id == alert_id, SpeakerCommand.fallback == True,  # noqa: E712
                col(SpeakerCommand.id).not_in([c.id for c in cmds]),
                (SpeakerCommand.state != CommandState.PLAYED) | (SpeakerCommand.late == True),  # noqa: E712
            ))).all()
            waiting = {o.id for code in still_dark if (o := self.fallback_official(code, roster)) is not None}
            officials = {o.id for c in cmds if (o := self.fallback_official(c.region_code, roster)) is not None}
            done = officials - waiting
            if not done:
                continue
            ids = list((await s.exec(select(Call.id).where(
                Call.alert_id == companion, col(Call.person_id).in_(done)))).all())
            moved = await calls.cancel_calls(s, [i for i in ids if i is not None], now,
                                             event="speaker_fallback_closed", reason="speaker_played", alert_id=companion,
                                             for_alert=alert_id, devices=[c.device_id for c in cmds])
            closed += len(moved)
        return closed

    def fallback_official(self, region_code: str, roster: RosterSnapshot) -> PersonView | None:
        """The planner's nearest-holder search over `fallback_roles`."""
        found = nearest_holders(region_code, self.cfg.fallback_roles, roster.index, roster.regions)
        return found[0] if found else None

    async def _companion(self, s: AsyncSession, alert: Alert, now: datetime) -> Alert:
        row = (await s.exec(select(Alert).where(Alert.fallback_for_id == alert.id))).first()
        if row is not None:
            return row
        row = Alert(
            sender=alert.sender, identifier=f"{alert.identifier}{FALLBACK_SUFFIX}", sent=alert.sent,
            status=alert.status, msg_type="Alert", references=[[alert.sender, alert.identifier, alert.sent.isoformat()]],
            source=FALLBACK_SOURCE, hazard=alert.hazard, colour=alert.colour, step=alert.step, event=alert.event,
            sender_name=alert.sender_name, headline=alert.headline, description=alert.description,
            instruction=FALLBACK_TASK, area_desc=alert.area_desc, onset=alert.onset, expires=alert.expires,
            region_codes=[], unknown_codes=[], state=AlertState.ACTIVE, supersedes_id=None,
            fallback_for_id=alert.id, received_at=now, raw_xml="",
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
        composer = Composer(self.templates, self.roles, None, policy=self.policy, regions=roster.regions)
        window = timedelta(minutes=self.cfg.fallback_confirm_minutes)
        ladder = self.cfg.fallback_ladder if self.cfg.fallback_ladder in self.policy.ladders else next(iter(self.policy.ladders))
        opened = 0
        villages = set(companion.region_codes)
        for d in dark:
            villages.add(decide.village_of(d.region_code))
            official = self.fallback_official(d.region_code, roster)
            if official is None:
                events.record(s, now, "speaker_fallback_gap", alert_id=alert.id, device=d.device_id,
                              region=d.region_code, reason=d.reason)
                continue
            if official.id in existing:
                events.record(s, now, "speaker_fallback", alert_id=alert.id, person_id=official.id,
                              device=d.device_id, region=d.region_code, reason=d.reason, call="existing")
                continue
            planned = PlannedCall(person_id=official.id, role=official.role, region_code=official.region_code,
                                  deadline=now + window, ladder=ladder, channels=tuple(self.cfg.fallback_channels))
            cid = (await calls.open_calls(s, [calls.new_row(companion.id, alert.step, planned, now)]))[official.id]
            region = roster.regions.get(decide.village_of(d.region_code))
            call = await s.get(Call, cid)
            rows = [deliveries.new_row(companion.id, cid, alert.step, official, ch, Purpose.WARNING, 0,
                                       composer.body(companion, "speaker_fallback", ch, official, now, call=call,
                                                     region_name=region.name if region else d.region_code),
                                       now)
                    for ch in self.cfg.fallback_channels]
            await deliveries.insert_rows(s, rows)
            existing.add(official.id)
            opened += 1
            events.record(s, now, "speaker_fallback", alert_id=alert.id, call_id=cid, person_id=official.id,
                          device=d.device_id, region=d.region_code, reason=d.reason, call="opened")
        ids = [d.command_id for d in dark if d.command_id is not None]
        if ids:
            await (await s.connection()).execute(update(SC).where(SC.c.id.in_(ids)).values(fallback=True))
        companion.region_codes = sorted(villages)
        s.add(companion)
        return opened
