"""The 叫应 board of one warning, as the duty room reads it: per township → village, each
official's call (state, deadline, overdue, escalation rungs and who each rung notified,
channels used, 反馈 and people moved); the "call now" list of officials nobody reached, with
their phone numbers and their deputy's; loudspeaker coverage per village; coverage gaps by
name (村名 · 职务).

Read only. The numbers come from the same tables the engine writes (calls, deliveries,
speaker_commands, feedback) and the escalation rungs from the event log.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from warnd.confirm.feedback import feedback_by_call
from warnd.core.domain import CallState, CommandState, Level
from warnd.core.phones import national_format
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Event, Person, Region, SpeakerCommand
from warnd.views.alerts import COLOUR_ZH, STATE_ZH, STATUS_ZH, STEP_ZH

TOWNSHIP_LEN = Level.TOWNSHIP.code_length
VILLAGE_LEN = Level.VILLAGE.code_length

CALL_STATE_ZH = {CallState.OPEN: "待应答", CallState.CONFIRMED: "已应答", CallState.DUTY_ROOM: "转值班室",
                 CallState.CANCELLED: "已撤销"}
ACTION_ZH = {"resend": "再次提醒", "deputy": "通知替补人", "superior": "通知上级", "duty_room": "转值班室"}
CHANNEL_ZH = {"sms": "短信", "voice": "语音电话", "wecom": "企业微信", "speaker": "喇叭"}
DELIVERY_ZH = {"pending": "待发", "sending": "发送中", "sent": "已发出", "delivered": "已送达", "failed": "失败",
               "cancelled": "取消"}
VIA_ZH = {"sms_reply": "短信回复", "voice": "语音按键", "wecom": "企业微信", "link": "确认链接",
          "duty_officer": "值班员电话确认"}


def phone_text(phone: str | None) -> str:
    return national_format(phone) if phone else ""


@dataclass
class Village:
    code: str
    name: str
    officials: list[dict[str, Any]] = field(default_factory=list)
    speakers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("devices", "played", "failed", "dark", "waiting", "fallback_open", "fallback_confirmed"), 0))


async def callboard(db: Database, alert_id: int, now: datetime, roles: Roles,
                    hazard_label: Any = None) -> dict[str, Any] | None:
    async with db.read() as s:
        alert = await s.get(Alert, alert_id)
        if alert is None:
            return None
        regions = {r.code: r for r in (await s.exec(select(Region))).all()}
        rows = (await s.exec(select(Call, Person).join(Person, Person.id == Call.person_id).where(  # type: ignore[arg-type]
            Call.alert_id == alert_id).order_by(col(Call.region_code), col(Call.id)))).all()
        deputy_keys = {p.deputy_key for _, p in rows if p.deputy_key}
        deputies = {p.key: p for p in (await s.exec(select(Person).where(col(Person.key).in_(deputy_keys)))).all()}
        rungs = (await s.exec(select(Event).where(Event.alert_id == alert_id, col(Event.kind).in_(
            ["call_escalated", "call_to_duty_room"])).order_by(col(Event.id)))).all()
        recipient_ids = {int(r) for e in rungs for r in e.data.get("recipients", [])}
        sends = (await s.exec(select(Delivery.call_id, Delivery.channel, Delivery.state, func.count()).where(
            Delivery.alert_id == alert_id, col(Delivery.call_id).is_not(None)).group_by(
            col(Delivery.call_id), col(Delivery.channel), col(Delivery.state)))).all()
        names = dict((await s.exec(select(Person.id, Person.name).where(col(Person.id).in_(recipient_ids)))).all())
        gaps = (await s.exec(select(Event.data).where(Event.alert_id == alert_id,
                                                      Event.kind == "coverage_gap"))).all()
        commands = (await s.exec(select(SpeakerCommand.village_code, SpeakerCommand.state, SpeakerCommand.late,
                                        SpeakerCommand.fallback).where(SpeakerCommand.alert_id == alert_id))).all()
        companion_ids = (await s.exec(select(Alert.id).where(Alert.fallback_for_id == alert_id))).all()
        fallback_calls = (await s.exec(select(Call.region_code, Call.state).where(
            col(Call.alert_id).in_(list(companion_ids))))).all() if companion_ids else []
    feedback = await feedback_by_call(db, alert_id)

    def region_name(code: str) -> str:
        r = regions.get(code)
        return r.name if r else code

    by_call: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in rungs:
        if e.call_id is None:
            continue
        by_call[e.call_id].append({
            "level": e.data.get("level"), "action": e.data.get("action"),
            "action_zh": ACTION_ZH.get(str(e.data.get("action")), str(e.data.get("action"))), "at": e.at.isoformat(),
            "notified": [names.get(int(r), str(r)) for r in e.data.get("recipients", [])]})
    channels: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
    failed_sends: Counter[int] = Counter()
    for d_call, channel, d_state, n in sends:
        channels[d_call or 0][(channel, d_state)] += n
        if d_state == "failed":
            failed_sends[d_call or 0] += n

    townships: dict[str, dict[str, Village]] = defaultdict(dict)

    def village_for(code: str) -> Village:
        town = code[:TOWNSHIP_LEN]
        vcode = code[:VILLAGE_LEN] if len(code) >= VILLAGE_LEN else town
        vname = region_name(vcode) if vcode != town else f"{region_name(town)}本级"
        return townships[town].setdefault(vcode, Village(vcode, vname))

    counts: Counter[str] = Counter()
    call_now: list[dict[str, Any]] = []
    for call, person in rows:
        cid = call.id or 0
        overdue = call.state == CallState.OPEN and call.deadline is not None and call.deadline < now
        fb = feedback.get(cid, [])
        deputy = deputies.get(person.deputy_key or "")
        place = region_name(call.region_code)
        item = {
            "id": cid, "name": person.name, "role": call.role, "role_label": roles.label(call.role),
            "region_code": call.region_code, "place": place,
            "phone": phone_text(person.phone), "phone_tel": person.phone or person.phone2 or "",
            "phone2": phone_text(person.phone2),
            "deputy": {"name": deputy.name, "phone": phone_text(deputy.phone or deputy.phone2),
                       "tel": deputy.phone or deputy.phone2 or ""} if deputy else None,
            "state": call.state, "state_zh": CALL_STATE_ZH.get(CallState(call.state), call.state),
            "deadline": call.deadline.isoformat() if call.deadline else None, "overdue": overdue,
            "level": call.level, "rungs": by_call.get(cid, []),
            "channels": [{"channel": ch, "channel_zh": CHANNEL_ZH.get(ch, ch), "state": st,
                          "state_zh": DELIVERY_ZH.get(st, st), "count": n}
                         for (ch, st), n in sorted(channels[cid].items())],
            "send_failed": failed_sends[cid],
            "confirmed_at": call.confirmed_at.isoformat() if call.confirmed_at else None,
            "confirmed_via": call.confirmed_via, "via_zh": VIA_ZH.get(call.confirmed_via or "", call.confirmed_via),
            "note": call.note, "feedback": fb, "people_moved": sum(f["people_moved"] for f in fb),
        }
        counts["called"] += 1
        counts[call.state] += 1
        counts["overdue"] += overdue
        counts["people_moved"] += item["people_moved"]
        village_for(call.region_code).officials.append(item)
        if overdue or call.state == CallState.DUTY_ROOM:
            call_now.append(item)
    call_now.sort(key=lambda c: (c["state"] != CallState.DUTY_ROOM, c["deadline"] or "", c["id"]))

    for vcode, state, late, fallback in commands:
        sp = village_for(vcode).speakers
        sp["devices"] += 1
        if state == CommandState.PLAYED and not late:
            sp["played"] += 1
        elif state in (CommandState.FAILED, CommandState.NO_ACK, CommandState.EXPIRED) or (
                state == CommandState.PLAYED and late):
            sp["failed"] += 1
        elif fallback and state not in (CommandState.CANCELLED,):
            sp["dark"] += 1
        elif state != CommandState.CANCELLED:
            sp["waiting"] += 1
    for code, state in fallback_calls:
        sp = village_for(code).speakers
        sp["fallback_confirmed" if state == CallState.CONFIRMED else "fallback_open"] += (
            state != CallState.CANCELLED)

    gap_items = []
    for data in gaps:
        for g in data.get("gaps", []):
            code = str(g.get("region", ""))
            town = region_name(code[:TOWNSHIP_LEN]) if len(code) > TOWNSHIP_LEN else ""
            where = f"{town}·{region_name(code)}" if town else region_name(code)
            gap_items.append({"text": f"{where} · {roles.label(str(g.get('role', '')))}", "region_code": code,
                              "role": g.get("role")})

    speaker_total = Counter[str]()
    out_towns: list[dict[str, Any]] = []
    for tcode in sorted(townships):
        villages: list[dict[str, Any]] = []
        for v in sorted(townships[tcode].values(), key=lambda v: v.code):
            speaker_total.update(v.speakers)
            villages.append({"code": v.code, "name": v.name, "officials": v.officials, "speakers": v.speakers,
                             "overdue": sum(1 for o in v.officials if o["overdue"]),
                             "confirmed": sum(1 for o in v.officials if o["state"] == CallState.CONFIRMED)})
        out_towns.append({"code": tcode, "name": region_name(tcode), "villages": villages,
                          "called": sum(len(v["officials"]) for v in villages),
                          "confirmed": sum(int(v["confirmed"]) for v in villages),
                          "overdue": sum(int(v["overdue"]) for v in villages)})
    return {
        "alert": {
            "id": alert.id, "identifier": alert.identifier, "headline": alert.headline, "state": alert.state,
            "state_zh": STATE_ZH.get(alert.state, alert.state), "status": alert.status,
            "status_zh": STATUS_ZH.get(alert.status, alert.status), "real": alert.status == "Actual",
            "step": alert.step, "step_zh": STEP_ZH.get(alert.step, alert.step), "colour": alert.colour,
            "colour_zh": COLOUR_ZH.get(alert.colour, alert.colour), "hazard": alert.hazard,
            "hazard_zh": hazard_label(alert.hazard) if hazard_label else alert.hazard,
            "source": alert.source, "sender_name": alert.sender_name or alert.sender,
            "sent": alert.sent.isoformat(), "expires": alert.expires.isoformat() if alert.expires else None,
            "fallback_for": alert.fallback_for_id,
        },
        "now": now.isoformat(),
        "counts": dict(counts, confirmed=counts[CallState.CONFIRMED], open=counts[CallState.OPEN],
                       duty_room=counts[CallState.DUTY_ROOM]),
        "townships": out_towns,
        "call_now": call_now,
        "speakers": dict(speaker_total),
        "gaps": gap_items,
    }
