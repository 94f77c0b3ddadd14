"""When every message of a call's current rung has failed, the call does not sit out its
confirm window: its deadline is brought forward to now, so the next rung (another channel,
the deputy, the duty room) fires at once. A voice call nobody answered at night (叫醒) or an
SMS the carrier could not deliver must not buy ten silent minutes (三断: say so, fall back)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import CallState, Purpose
from warnd.db.models import Call, Delivery
from warnd.engine import events

DEAD = ("failed", "cancelled")


async def after_failed_delivery(s: AsyncSession, d: Delivery, now: datetime) -> bool:
    """Call inside the transaction that marked `d` failed. True when the deadline moved."""
    if d.call_id is None or d.purpose not in (Purpose.WARNING, Purpose.ESCALATION):
        return False
    call = await s.get(Call, d.call_id)
    rung = d.rung or 0
    if call is None or call.state != CallState.OPEN or call.level != rung:
        return False  # confirmed, closed, or the ladder already moved past this rung
    if call.deadline is None or call.deadline <= now:
        return False
    states = (await s.exec(select(Delivery.state).where(
        Delivery.call_id == call.id, func.coalesce(Delivery.rung, 0) == rung,
        col(Delivery.purpose).in_([Purpose.WARNING, Purpose.ESCALATION])))).all()
    if any(st not in DEAD for st in states):
        return False  # another channel of this rung may still reach them
    res = await s.exec(update(Call).where(col(Call.id) == call.id, col(Call.fence) == call.fence).values(
        deadline=now, fence=call.fence + 1))
    if res.rowcount != 1:
        return False
    events.record(s, now, "call_channels_failed", alert_id=call.alert_id, call_id=call.id,
                  person_id=call.person_id, level=call.level, was_deadline=call.deadline.isoformat())
    return True
