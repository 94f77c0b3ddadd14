"""The duty room's view of an alert: who was called, who confirmed, who is overdue."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from warnd.confirm.feedback import feedback_by_call
from warnd.core.domain import AlertStatus, CallState
from warnd.core.roles import Roles
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Delivery, Event, Person, Region


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


async def alert_summary(db: Database, alert_id: int, now: datetime) -> dict[str, Any] | None:
    async with db.read() as s:
        alert = await s.get(Alert, alert_id)
        if alert is None:
            return None
        calls = (await s.exec(select(Call).where(Call.alert_id == alert_id))).all()
        deliveries = (await s.exec(select(Delivery.state, Delivery.purpose).where(
            Delivery.alert_id == alert_id))).all()
        gaps = (await s.exec(select(Event.data).where(Event.alert_id == alert_id,
                                                      Event.kind == "coverage_gap"))).all()
    states = Counter(c.state for c in calls)
    overdue = sum(1 for c in calls if c.state == CallState.OPEN and c.deadline and c.deadline < now)
    return {
        "id": alert.id, "sender": alert.sender, "identifier": alert.identifier,
        "status": alert.status, "real": alert.status == AlertStatus.ACTUAL, "msg_type": alert.msg_type,
        "state": alert.state, "hazard": alert.hazard, "colour": alert.colour, "step": alert.step,
        "headline": alert.headline, "sent": _iso(alert.sent), "onset": _iso(alert.onset),
        "expires": _iso(alert.expires), "received_at": _iso(alert.received_at),
        "supersedes": alert.supersedes_id, "regions": len(alert.region_codes),
        "unknown_codes": alert.unknown_codes,
        "steps": {alert.step: {
            "called": len(calls),
            "confirmed": states.get(CallState.CONFIRMED, 0),
            "open": states.get(CallState.OPEN, 0),
            "overdue": overdue,
            "duty_room": states.get(CallState.DUTY_ROOM, 0),
            "cancelled": states.get(CallState.CANCELLED, 0),
            "escalated": sum(1 for c in calls if c.level > 0),
        }},
        "deliveries": dict(Counter(st for st, _ in deliveries)),
        "gaps": [g for data in gaps for g in data.get("gaps", [])],
    }


async def alert_calls(db: Database, alert_id: int, now: datetime, roles: Roles) -> list[dict[str, Any]] | None:
    async with db.read() as s:
        if await s.get(Alert, alert_id) is None:
            return None
        rows = (await s.exec(select(Call, Person).join(Person, Person.id == Call.person_id).where(  # type: ignore[arg-type]
            Call.alert_id == alert_id).order_by(col(Call.region_code), col(Call.id)))).all()
        region_names = dict((await s.exec(select(Region.code, Region.name))).all())
    feedback = await feedback_by_call(db, alert_id)
    out = []
    for call, person in rows:
        out.append({
            "id": call.id, "person_id": person.id, "name": person.name, "phone": person.phone,
            "role": call.role, "role_label": roles.label(call.role), "region_code": call.region_code,
            "region": region_names.get(call.region_code, call.region_code), "state": call.state,
            "level": call.level, "deadline": _iso(call.deadline),
            "overdue": call.state == CallState.OPEN and bool(call.deadline and call.deadline < now),
            "short_code": call.short_code, "confirmed_at": _iso(call.confirmed_at),
            "confirmed_via": call.confirmed_via, "confirmed_by": call.confirmed_by_id,
            "seconds_to_confirm": (call.confirmed_at - call.created_at).total_seconds() if call.confirmed_at else None,
            "note": call.note,
            "feedback": feedback.get(call.id or 0, []),  # 反馈: actions, people_moved, note, by, at
            "people_moved": sum(f["people_moved"] for f in feedback.get(call.id or 0, [])),
        })
    return out
