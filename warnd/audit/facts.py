"""From rows to facts: what happened to each warning, message, call, place and loudspeaker,
read off the event log. Pure: no I/O.

Every fact starts at an event. The other tables only add what an event does not carry: a
delivery's channel, purpose and step (joined by `delivery_id`), a call's place and role (by
`call_id`), names of people and places. docs/audit.md lists each number with its events.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from warnd.audit.rows import (
    AlertRow,
    AuditInput,
    CallRow,
    DeliveryRow,
    EventRow,
    RegionRow,
    SpeakerCommandRow,
)

REAL, DRILL = "real", "drill"
KINDS = (REAL, DRILL)
STEPS = ("forecast", "warning", "imminent")
REACH_PURPOSES = ("warning", "escalation")  # messages that carry the warning to a person
CHANNEL_ORDER = ("sms", "wecom", "voice", "public_sms")
SPEAKER, PHONE = "speaker", "phone"  # pseudo-channels: a loudspeaker played, the duty officer phoned
SENT_EVENTS = ("delivery_sent", "delivery_reconciled")
DELIVERY_EVENTS = (*SENT_EVENTS, "delivery_delivered", "delivery_undelivered", "delivery_failed")
# Every event kind a number is counted from (the loader reads only these).
USED_EVENTS = (
    "alert_accepted", "calls_opened", "coverage_gap", *DELIVERY_EVENTS, "call_confirmed", "call_escalated",
    "call_to_duty_room", "escalation_gap", "feedback_received", "speaker_played", "speaker_failed",
    "speaker_fallback_opened", "speaker_fallback",
)


def kind_of(status: str) -> str:
    """CAP status Actual is real; Exercise and Test are drills (System/Draft are never accepted)."""
    return REAL if status == "Actual" else DRILL


def step_order(step: str) -> int:
    return STEPS.index(step) if step in STEPS else len(STEPS)


def channel_order(channel: str) -> tuple[int, str]:
    return (CHANNEL_ORDER.index(channel) if channel in CHANNEL_ORDER else len(CHANNEL_ORDER), channel)


@dataclass
class Warning:
    """One accepted warning (an `alert_accepted` event): one 期."""

    id: int
    kind: str
    step: str
    colour: str
    hazard: str
    accepted_at: datetime
    event_id: int
    alert: AlertRow | None


@dataclass
class Send:
    """One message, as its delivery events tell it."""

    d: DeliveryRow
    warning_id: int
    sent_at: datetime | None = None  # first delivery_sent / delivery_reconciled
    delivered: bool = False  # delivery_delivered: the handset / callee got it
    undelivered: bool = False  # delivery_undelivered: the provider says it did not arrive
    failed: bool = False  # delivery_failed: never accepted by the provider

    @property
    def reached(self) -> bool:
        """Accepted by the provider and not reported undelivered: one 人次."""
        return self.sent_at is not None and not self.undelivered

    @property
    def step(self) -> str | None:
        return self.d.step


@dataclass
class CallFact:
    """One 叫应 obligation and what happened to it."""

    call: CallRow
    warning: Warning
    fallback: bool  # a loudspeaker-fallback call (鸣锣吹哨/敲门入户), not the warning's own
    place: str  # village, township or county code the obligation sits at
    township: str | None
    village: str | None
    opened_at: datetime  # alert_accepted (or speaker_fallback) event time
    first_sent_at: datetime | None = None  # first send of the warning to the official
    reached: set[str] = field(default_factory=set)  # channels that reached the official
    confirmed_at: datetime | None = None  # call_confirmed event
    confirm_event: int | None = None
    via: str | None = None
    confirm_level: int | None = None  # rungs fired before the confirmation
    carried: bool = False  # confirmed the warning this one updates (calls_opened.carried)
    rungs: list[tuple[int, str, datetime]] = field(default_factory=list)  # (level, action, at)
    duty_room: bool = False
    feedback: int = 0
    people_moved: int = 0

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None or self.carried

    @property
    def in_time(self) -> bool:
        """Confirmed before the first rung of the ladder fired (a carried confirmation counts)."""
        return self.carried or (self.confirmed_at is not None and self.confirm_level == 0)

    @property
    def seconds_to_confirm(self) -> float | None:
        """From the first send to the official (else from the call's opening) to the confirmation."""
        if self.confirmed_at is None or self.carried:
            return None
        start = self.first_sent_at or self.opened_at
        return max((self.confirmed_at - start).total_seconds(), 0.0)

    @property
    def max_level(self) -> int:
        return max((lv for lv, _, _ in self.rungs), default=0)

    @property
    def last_action(self) -> str | None:
        return max(self.rungs)[1] if self.rungs else None

    @property
    def outcome(self) -> str:
        if self.confirmed:
            return "confirmed"
        if self.duty_room:
            return "duty_room"
        return "cancelled" if self.call.state == "cancelled" else "open"


@dataclass
class Unit:
    """One place one warning had to reach: a village (or township, or the county) where it
    called officials, played loudspeakers or found nobody to call (a coverage gap)."""

    warning: Warning
    place: str
    township: str | None
    village: str | None
    calls: list[CallFact] = field(default_factory=list)
    fallback_calls: list[CallFact] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # roles nobody holds (coverage_gap events)
    reached: set[str] = field(default_factory=set)  # channels
    speaker_commands: int = 0
    speaker_played: int = 0  # in time

    @property
    def is_reached(self) -> bool:
        return bool(self.reached)


@dataclass
class SpeakerFact:
    command: SpeakerCommandRow
    warning: Warning
    township: str | None
    played: EventRow | None  # speaker_played
    failed: EventRow | None  # speaker_failed

    @property
    def played_in_time(self) -> bool:
        return self.played is not None and not self.played.data.get("late")


class Places:
    """Region look-ups: the place an obligation sits at, its township, names."""

    def __init__(self, regions: dict[str, RegionRow]):
        self.regions = regions

    def _up(self, code: str, levels: tuple[str, ...]) -> RegionRow | None:
        r = self.regions.get(code)
        seen = 0
        while r is not None and r.level not in levels and r.parent_code and seen < 8:
            r, seen = self.regions.get(r.parent_code), seen + 1
        return r if r is not None and r.level in levels else None

    def place(self, code: str) -> str:
        """A group's village; a village, township or county itself."""
        r = self._up(code, ("village", "township", "county"))
        if r is not None:
            return r.code
        return code[:12] if len(code) > 12 else code  # unknown region: the code convention

    def township(self, code: str) -> str | None:
        r = self._up(code, ("township",))
        if r is not None:
            return r.code
        return code[:9] if len(code) >= 9 and code not in self.regions else None

    def village(self, code: str) -> str | None:
        r = self._up(code, ("village",))
        if r is not None:
            return r.code
        return code[:12] if len(code) >= 12 and code not in self.regions else None

    def name(self, code: str | None) -> str:
        if code is None:
            return ""
        r = self.regions.get(code)
        return r.name if r else code


@dataclass
class Facts:
    warnings: dict[int, Warning]
    owner: dict[int, int]  # alert id → the warning it belongs to (fallback companions fold in)
    sends: list[Send]
    calls: list[CallFact]
    units: dict[tuple[int, str], Unit]
    speakers: list[SpeakerFact]
    escalation_gaps: list[tuple[int, int, str]]  # (warning, call, action) with nobody to escalate to
    calls_opened: dict[int, EventRow]
    untraceable: Counter[str]  # events whose delivery/call row is missing
    places: Places

    def kinds(self) -> list[str]:
        return [k for k in KINDS if any(w.kind == k for w in self.warnings.values())]


def _call_of(c: CallRow, w: Warning, places: Places, opened_at: datetime) -> CallFact:
    return CallFact(call=c, warning=w, fallback=c.alert_id != w.id, place=places.place(c.region_code),
                    township=places.township(c.region_code), village=places.village(c.region_code),
                    opened_at=opened_at)


def build_facts(inp: AuditInput) -> Facts:
    places = Places(inp.regions)
    events = sorted(inp.events, key=lambda e: (e.at, e.id))
    alerts = {a.id: a for a in inp.alerts}
    warnings: dict[int, Warning] = {}
    for e in events:
        if e.kind == "alert_accepted" and e.alert_id is not None and e.alert_id not in warnings:
            a = alerts.get(e.alert_id)
            warnings[e.alert_id] = Warning(
                id=e.alert_id, kind=kind_of(str(e.data.get("status", a.status if a else "Actual"))),
                step=str(e.data.get("step", a.step if a else "")), colour=str(e.data.get("colour", "")),
                hazard=str(e.data.get("hazard", "")), accepted_at=e.at, event_id=e.id, alert=a)
    owner = {wid: wid for wid in warnings}
    fallback_opened_at: dict[int, datetime] = {}
    for e in events:
        if e.kind == "speaker_fallback_opened" and e.alert_id is not None:
            target = e.data.get("for_alert")
            if isinstance(target, int) and target in warnings:
                owner[e.alert_id] = target
        elif e.kind == "speaker_fallback" and e.call_id is not None and e.data.get("call") == "opened":
            fallback_opened_at[e.call_id] = e.at

    untraceable: Counter[str] = Counter()
    deliveries = {d.id: d for d in inp.deliveries}
    by_delivery: dict[int, Send] = {}
    for e in events:
        if e.kind not in DELIVERY_EVENTS or e.delivery_id is None:
            continue
        d = deliveries.get(e.delivery_id)
        if d is None:
            untraceable["delivery"] += 1
            continue
        wid = owner.get(d.alert_id or -1)
        if wid is None:
            continue
        s = by_delivery.setdefault(d.id, Send(d, wid))
        if e.kind in SENT_EVENTS:
            s.sent_at = s.sent_at or e.at
        elif e.kind == "delivery_delivered":
            s.delivered = True
        elif e.kind == "delivery_undelivered":
            s.undelivered = True
        else:
            s.failed = True
    sends = sorted(by_delivery.values(), key=lambda s: s.d.id)

    calls: dict[int, CallFact] = {}
    for c in inp.calls:
        wid = owner.get(c.alert_id)
        if wid is None:
            continue
        w = warnings[wid]
        opened = w.accepted_at if c.alert_id == wid else fallback_opened_at.get(c.id, c.created_at)
        calls[c.id] = _call_of(c, w, places, opened)
    for s in sends:
        cf = calls.get(s.d.call_id or -1)
        if cf is None or s.d.person_id != cf.call.person_id or s.d.purpose not in REACH_PURPOSES:
            continue
        if s.reached:
            cf.reached.add(s.d.channel)
        if s.d.purpose == "warning" and s.sent_at is not None:
            cf.first_sent_at = min(filter(None, (cf.first_sent_at, s.sent_at)))

    calls_opened: dict[int, EventRow] = {}
    escalation_gaps: list[tuple[int, int, str]] = []
    played: dict[str, EventRow] = {}
    failed: dict[str, EventRow] = {}
    for e in events:
        cf = calls.get(e.call_id) if e.call_id is not None else None
        if e.call_id is not None and cf is None and e.kind.startswith("call_") and e.alert_id in owner:
            untraceable["call"] += 1
        if e.kind == "call_confirmed" and cf is not None and cf.confirmed_at is None:
            cf.confirmed_at, cf.confirm_event, cf.via = e.at, e.id, str(e.data.get("via") or "")
            cf.confirm_level = int(e.data.get("level") or 0)
        elif e.kind in ("call_escalated", "call_to_duty_room") and cf is not None:
            cf.rungs.append((int(e.data.get("level") or 0), str(e.data.get("action") or ""), e.at))
            cf.duty_room = cf.duty_room or e.kind == "call_to_duty_room"
        elif e.kind == "escalation_gap" and cf is not None:
            escalation_gaps.append((cf.warning.id, cf.call.id, str(e.data.get("action") or "")))
        elif e.kind == "feedback_received" and cf is not None:
            cf.feedback += 1
            cf.people_moved += int(e.data.get("people_moved") or 0)
        elif e.kind == "calls_opened" and e.alert_id in warnings:
            calls_opened[e.alert_id] = e
            for cid in e.data.get("carried") or []:
                carried = calls.get(cid)
                if carried is not None and carried.confirmed_at is None:
                    carried.carried = True
        elif e.kind == "speaker_played":
            played.setdefault(str(e.data.get("cmd_id")), e)
        elif e.kind == "speaker_failed":
            failed.setdefault(str(e.data.get("cmd_id")), e)
    for cf in calls.values():
        # Databases from before the calls_opened event: a confirmed row with no confirmation
        # event was carried over from the warning it updates (the row's note says so).
        if (cf.warning.id not in calls_opened and not cf.confirmed and cf.call.state == "confirmed"
                and (cf.call.note or "").startswith("carried over")):
            cf.carried = True

    units: dict[tuple[int, str], Unit] = {}

    def unit(w: Warning, code: str) -> Unit:
        place = places.place(code)
        key = (w.id, place)
        if key not in units:
            units[key] = Unit(w, place, places.township(place), places.village(place))
        return units[key]

    for cf in sorted(calls.values(), key=lambda c: c.call.id):
        u = unit(cf.warning, cf.place)
        (u.fallback_calls if cf.fallback else u.calls).append(cf)
        if cf.via == "duty_officer":
            u.reached.add(PHONE)
    for e in events:
        if e.kind == "coverage_gap" and e.alert_id in warnings:
            for g in e.data.get("gaps") or []:
                unit(warnings[e.alert_id], str(g.get("region"))).gaps.append(str(g.get("role")))
    people_place = {pid: places.place(p.region_code) for pid, p in inp.people.items()}
    for s in sends:
        cf = calls.get(s.d.call_id or -1)
        if cf is None or not s.reached or s.d.purpose not in REACH_PURPOSES:
            continue
        # A deputy in the same village reached it; a superior in the township did not.
        if s.d.person_id == cf.call.person_id or people_place.get(s.d.person_id) == cf.place:
            unit(cf.warning, cf.place).reached.add(s.d.channel)
    speakers: list[SpeakerFact] = []
    for cmd in sorted(inp.speaker_commands, key=lambda c: c.id):
        wid = owner.get(cmd.alert_id)
        if wid is None:
            continue
        sf = SpeakerFact(cmd, warnings[wid], places.township(cmd.village_code), played.get(cmd.cmd_id),
                         failed.get(cmd.cmd_id))
        speakers.append(sf)
        u = unit(sf.warning, cmd.village_code)
        u.speaker_commands += 1
        if sf.played_in_time:
            u.speaker_played += 1
            u.reached.add(SPEAKER)
    return Facts(warnings=warnings, owner=owner, sends=sends,
                 calls=sorted(calls.values(), key=lambda c: c.call.id), units=units, speakers=speakers,
                 escalation_gaps=escalation_gaps, calls_opened=calls_opened, untraceable=untraceable,
                 places=places)


def sends_by(facts: Facts) -> dict[tuple[str, str, str], list[Send]]:
    """Messages that carry the warning, by (kind, step, channel)."""
    out: dict[tuple[str, str, str], list[Send]] = defaultdict(list)
    for s in facts.sends:
        if s.d.purpose in REACH_PURPOSES:
            w = facts.warnings[s.warning_id]
            out[(w.kind, s.step or w.step, s.d.channel)].append(s)
    return out
