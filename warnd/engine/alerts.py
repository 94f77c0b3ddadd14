"""The one owner of the `alerts` table's state transitions:

    active ──Update──► superseded
    active ──Cancel / duty-room cancel / 解除──► cancelled
    active ──`expires` passed──► expired

Lifting a warning (cancel, expiry) stops everything still owed for it: its open calls are
cancelled (fenced), its messages not yet handed to a provider are cancelled, and everyone
the warning may already have reached is told it is lifted. Every path that lifts — a CAP
Cancel, the duty room, expiry, a fallback following its warning — goes through `lift`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import REACHED_STATES, AlertState, Purpose
from warnd.db.models import Alert, Delivery
from warnd.engine import calls, deliveries, events
from warnd.engine.messages import Composer
from warnd.engine.roster import RosterSnapshot

A = Alert.__table__  # type: ignore[attr-defined]


async def move(s: AsyncSession, alert: Alert, to: AlertState, expect: AlertState = AlertState.ACTIVE) -> bool:
    """Compare-and-swap the alert's state; True when this caller moved it (another path — a
    Cancel racing an expiry, a second instance — may have got there first)."""
    res = await (await s.connection()).execute(update(A).where(
        A.c.id == alert.id, A.c.state == expect.value).values(state=to.value))
    if res.rowcount != 1:
        return False
    alert.state = to.value
    return True


async def lift(s: AsyncSession, alert: Alert, to: AlertState, now: datetime, *, reason: str,
               roster: RosterSnapshot | None, composer: Composer | None, event: str = "alert_cancelled",
               **event_data: Any) -> tuple[int, int] | None:
    """End an active warning: calls cancelled, pending messages cancelled, a lifted notice to
    everyone already reached (when `composer` and `roster` are given). Returns (calls
    cancelled, notices), or None when the warning was no longer active."""
    if not await move(s, alert, to):
        return None
    assert alert.id is not None
    cancelled = await calls.cancel_open(s, alert.id, now)
    await deliveries.cancel_pending(s, alert_id=alert.id, except_purposes=[Purpose.CANCEL_NOTICE])
    notices = 0
    if composer is not None and roster is not None:
        reached = (await s.exec(select(Delivery.person_id, Delivery.channel).where(
            # "sending": the provider may already have it; a lifted notice must follow it.
            Delivery.alert_id == alert.id, col(Delivery.state).in_([st.value for st in REACHED_STATES]),
            col(Delivery.purpose).in_([Purpose.WARNING, Purpose.ESCALATION])).distinct())).all()
        rows = []
        for person_id, channel in sorted(set(reached)):
            person = roster.by_id.get(person_id)
            if person is None:
                continue
            body = composer.body(alert, "cancel_notice", channel, person, now)
            rows.append(deliveries.new_row(alert.id, None, None, person, channel, Purpose.CANCEL_NOTICE, None,
                                           body, now))
        notices = await deliveries.insert_rows(s, rows)
    events.record(s, now, event, alert_id=alert.id, reason=reason, calls_cancelled=len(cancelled),
                  notices=notices, **event_data)
    return len(cancelled), notices


async def supersede(s: AsyncSession, old: Alert, by: Alert, now: datetime) -> list[tuple[int, int]] | None:
    """An Update replaced `old`: its open calls and pending messages are cancelled (the
    caller carries confirmations over). Returns the cancelled (call id, person id), or None
    when `old` was no longer active."""
    if not await move(s, old, AlertState.SUPERSEDED):
        return None
    assert old.id is not None
    cancelled = await calls.cancel_open(s, old.id, now, event="call_superseded", by_alert=by.id)
    await deliveries.cancel_pending(s, alert_id=old.id, except_purposes=[Purpose.CANCEL_NOTICE])
    events.record(s, now, "alert_superseded", alert_id=old.id, by_alert=by.id)
    return cancelled
