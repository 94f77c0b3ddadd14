"""The one owner of the `calls` table's rows and state transitions (叫应 obligations).

Every transition asks the pure state machine (warnd.core.callstate) what to do and writes
the result as a compare-and-swap on the call's fence, stamped with the claim token of the
pass that made it. A stale timer, a second instance or a duplicate webhook that read an
older fence updates zero rows and does nothing. Which calls this pass moved is known from
the update itself: one `UPDATE … RETURNING` per batch returns exactly the rows this
statement changed (a read-back of state, level and fence afterwards could not tell them
from the same move made by another instance, and the loser would count a rung as fired).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, bindparam, case, insert, literal, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.clock import Clock
from warnd.core.callstate import CallSnapshot, on_confirm
from warnd.core.domain import CallState, ConfirmVia, DeliveryState, PlannedCall, Purpose
from warnd.core.replies import short_code_for
from warnd.db.engine import Database
from warnd.db.models import Call, Delivery
from warnd.engine import deliveries, events

T = TypeVar("T")
C = Call.__table__  # type: ignore[attr-defined]  # Core table for bulk statements
OPEN_STATES = (CallState.OPEN.value, CallState.DUTY_ROOM.value)
# Until the warning has actually left, the confirm window gets this on top (a backed-up
# gateway must not eat the official's time); replaced by the real window at send.
SEND_GRACE = timedelta(minutes=10)


def new_token() -> str:
    return uuid.uuid4().hex


def snapshot(call: Call) -> CallSnapshot:
    return CallSnapshot(CallState(call.state), call.level, call.fence, call.deadline)


def new_row(alert_id: int, step: str, planned: PlannedCall, now: datetime, *,
            grace: timedelta = SEND_GRACE) -> dict[str, Any]:
    """A call row to open: waiting for 应 until the planned deadline (plus the send grace)."""
    return dict(
        alert_id=alert_id, person_id=planned.person_id, step=step, role=planned.role,
        region_code=planned.region_code, ladder=planned.ladder, channels=list(planned.channels),
        state=CallState.OPEN.value, level=0, fence=0, short_code="", created_at=now,
        deadline=planned.deadline + grace, window_seconds=int((planned.deadline - now).total_seconds()),
        confirmed_at=None, confirmed_via=None, confirmed_by_id=None, note=None, claim=None,
    )


def carried_over(row: dict[str, Any], old: Call) -> dict[str, Any]:
    """The official confirmed the warning this one updates (and neither colour nor step rose):
    the new call starts confirmed."""
    return {**row, "state": CallState.CONFIRMED.value, "deadline": None, "confirmed_at": old.confirmed_at,
            "confirmed_via": old.confirmed_via, "confirmed_by_id": old.confirmed_by_id,
            "note": f"carried over from alert {old.alert_id}"}


async def open_calls(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> dict[int, int]:
    """Insert calls and give each its short code (derived from its id). Returns
    person id → call id."""
    if not rows:
        return {}
    conn = await s.connection()
    # A plain executemany, then the ids by (alert, person) — unique. A multi-row INSERT …
    # RETURNING of a county-wide step (5,000 rows) made psycopg parse a megabyte of SQL for
    # every page (~0.9 s of the POST on PostgreSQL); executemany pipelines one statement.
    await conn.execute(insert(Call), list(rows))
    people: dict[int, list[int]] = {}
    for r in rows:
        people.setdefault(r["alert_id"], []).append(r["person_id"])
    ids: dict[int, int] = {}
    for alert_id, pids in people.items():
        wanted = set(pids)  # the alert's calls, read whole: no IN list of thousands to send
        res = await conn.execute(select(C.c.id, C.c.person_id).where(C.c.alert_id == alert_id))
        ids.update({int(pid): int(cid) for cid, pid in res.all() if pid in wanted})
    await conn.execute(update(C).where(C.c.id == bindparam("cid")).values(short_code=bindparam("code")),
                       [{"cid": cid, "code": short_code_for(cid)} for cid in ids.values()])
    return ids


async def confirm_many(s: AsyncSession, items: Sequence[tuple[Call, int | None]], via: ConfirmVia,
                       now: datetime, note: str | None = None, actor: str | None = None) -> set[int]:
    """Confirm many calls in a few statements (a reply storm at the imminent step). Returns
    the ids this caller really confirmed: a call already confirmed, cancelled or moved by
    someone else first is left alone."""
    wanted: dict[int, tuple[Call, int | None, CallSnapshot]] = {}
    for call, by in items:
        t = on_confirm(snapshot(call), now)
        if t.changed and call.id is not None and call.id not in wanted:
            wanted[call.id] = (call, by, t.call)
    if not wanted:
        return set()
    conn = await s.connection()
    moved: set[int] = set()
    for part in chunks(list(wanted.items())):
        res = await conn.execute(update(C).where(
            C.c.id.in_([cid for cid, _ in part]),
            C.c.fence == per_call({cid: call.fence for cid, (call, _, _) in part}, C.c.fence)).values(
            state=CallState.CONFIRMED.value, fence=per_call({cid: snap.fence for cid, (_, _, snap) in part}, C.c.fence),
            deadline=None, confirmed_at=now, confirmed_via=via.value, note=note, claim=new_token(),
            confirmed_by_id=per_call({cid: by for cid, (_, by, _) in part}, C.c.confirmed_by_id)).returning(C.c.id))
        moved |= {int(r[0]) for r in res}
    # Escalation messages not yet sent are moot now.
    await deliveries.cancel_pending(s, call_ids=moved, purposes=[Purpose.ESCALATION])
    for cid in sorted(moved):
        call, by, _ = wanted[cid]
        events.record(s, now, "call_confirmed", alert_id=call.alert_id, call_id=cid, person_id=call.person_id,
                      via=via.value, by=by, level=call.level, late=call.state == CallState.DUTY_ROOM, note=note,
                      actor=actor)
    return moved


async def cancel_open(s: AsyncSession, alert_id: int, now: datetime, *, event: str | None = None,
                      **data: Any) -> list[tuple[int, int]]:
    """Every call of the alert still waiting for 应 (open or with the duty room) is cancelled:
    the warning was lifted, expired or superseded. Returns (call id, person id) of each;
    `event`, when given, is recorded per call."""
    res = await (await s.connection()).execute(update(C).where(
        C.c.alert_id == alert_id, C.c.state.in_(OPEN_STATES)).values(
        state=CallState.CANCELLED.value, deadline=None, fence=C.c.fence + 1, claim=new_token()).returning(
        C.c.id, C.c.person_id))
    moved = sorted((int(cid), int(pid)) for cid, pid in res.all())
    if event is not None:
        for cid, pid in moved:
            events.record(s, now, event, alert_id=alert_id, call_id=cid, person_id=pid, **data)
    return moved


async def cancel_calls(s: AsyncSession, call_ids: Sequence[int], now: datetime, *, event: str,
                       **data: Any) -> list[tuple[int, int]]:
    """These calls, if still waiting for 应, are cancelled because what they asked for is moot
    (a loudspeaker fallback whose speaker played after all); their pending escalations too.
    Returns (call id, person id) of each call moved; `event` is recorded per call."""
    if not call_ids:
        return []
    res = await (await s.connection()).execute(update(C).where(
        C.c.id.in_(list(call_ids)), C.c.state.in_(OPEN_STATES)).values(
        state=CallState.CANCELLED.value, deadline=None, fence=C.c.fence + 1, claim=new_token()).returning(
        C.c.id, C.c.person_id))
    moved = sorted((int(cid), int(pid)) for cid, pid in res.all())
    await deliveries.cancel_pending(s, call_ids=[cid for cid, _ in moved])
    for cid, pid in moved:
        events.record(s, now, event, call_id=cid, person_id=pid, **data)
    return moved


@dataclass(frozen=True)
class Move:
    """A transition the state machine decided, to be applied with a compare-and-swap."""

    call: Call
    new: CallSnapshot


async def apply_moves(s: AsyncSession, moves: Sequence[Move]) -> set[int]:
    """Apply rung transitions (state, level, fence, deadline) as compare-and-swaps on the fence
    read. Returns the ids this caller moved."""
    if not moves:
        return set()
    # A storm's rungs share their transition (same fence read, same next state, level and
    # deadline): one plain statement per such group, not a CASE arm per call — the CASE form
    # compiled a new statement per batch and was most of an escalation pass (1,600 rungs).
    groups: dict[tuple[int, str, int, int, datetime | None], list[int]] = {}
    for m in moves:
        if m.call.id is not None:
            key = (m.call.fence, m.new.state.value, m.new.level, m.new.fence, m.new.deadline)
            groups.setdefault(key, []).append(m.call.id)
    conn = await s.connection()
    moved: set[int] = set()
    for (fence, state, level, new_fence, deadline), ids in groups.items():
        for part in chunks(ids):
            res = await conn.execute(update(C).where(C.c.id.in_(part), C.c.fence == fence).values(
                state=state, level=level, fence=new_fence, deadline=deadline, claim=new_token()).returning(C.c.id))
            moved |= {int(r[0]) for r in res}
    return moved


BATCH = 500  # calls per statement: a few CASE arms each, well inside both databases' bind limits


def chunks(items: list[T]) -> list[list[T]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def per_call(values: dict[int, Any], column: Any) -> ColumnElement[Any]:
    """A value per call id, for one UPDATE over a batch (`CASE id WHEN … THEN … END`), typed
    as `column` so timestamps and JSON bind as the column does."""
    return case({cid: literal(v, column.type) for cid, v in values.items()}, value=C.c.id,
                else_=literal(None, column.type))


async def restart_windows(s: AsyncSession, sent: Sequence[Delivery], at: datetime) -> None:
    """The confirm window counts from when the warning actually left, not from when it was
    planned: the send grace added at planning is replaced by the real window. Only calls
    still open at level 0 move (no rung fired, not confirmed), so this never races a rung."""
    ids = sorted({d.call_id for d in sent if d.call_id is not None and d.purpose == Purpose.WARNING})
    if not ids:
        return
    conn = await s.connection()
    windows = (await conn.execute(select(C.c.id, C.c.window_seconds).where(C.c.id.in_(ids)))).all()
    await conn.execute(update(C).where(C.c.id == bindparam("cid"), C.c.level == 0,
                                       C.c.state == CallState.OPEN.value).values(deadline=bindparam("dl")),
                       [{"cid": cid, "dl": at + timedelta(seconds=w)} for cid, w in windows])


async def bring_forward_if_rung_failed(s: AsyncSession, d: Delivery, now: datetime) -> bool:
    """Every message of the call's current rung has failed (三断: a voice call nobody answered
    at night, an SMS the carrier could not deliver): the call does not sit out its confirm
    window; its deadline comes forward to now so the next rung (another channel, the deputy,
    the duty room) fires at once. Call inside the transaction that marked `d` failed."""
    if d.call_id is None or d.purpose not in (Purpose.WARNING, Purpose.ESCALATION):
        return False
    call = await s.get(Call, d.call_id)
    rung = d.rung or 0
    if call is None or call.state != CallState.OPEN or call.level != rung:
        return False  # confirmed, closed, or the ladder already moved past this rung
    if call.deadline is None or call.deadline <= now:
        return False
    dead = (DeliveryState.FAILED.value, DeliveryState.CANCELLED.value)
    if any(st not in dead for st in await deliveries.rung_states(s, call.id or 0, rung)):
        return False  # another channel of this rung may still reach them
    res = await (await s.connection()).execute(update(C).where(C.c.id == call.id, C.c.fence == call.fence).values(
        deadline=now, fence=call.fence + 1, claim=new_token()))
    if res.rowcount != 1:
        return False
    events.record(s, now, "call_channels_failed", alert_id=call.alert_id, call_id=call.id,
                  person_id=call.person_id, level=call.level, was_deadline=call.deadline.isoformat())
    return True


@dataclass
class ConfirmOutcome:
    call_id: int
    confirmed: bool  # False: already confirmed/cancelled (duplicate), nothing changed
    state: str


class Calls:
    """Call transitions that run in their own transaction (a confirmation from a webhook, a
    link, the duty room), and the queries the escalation module waits on."""

    def __init__(self, db: Database, clock: Clock, on_change: Callable[[], None] = lambda: None):
        self.db, self.clock, self.on_change = db, clock, on_change

    async def confirm(self, call_id: int, via: ConfirmVia, by_person_id: int | None = None,
                      note: str | None = None, actor: str | None = None) -> ConfirmOutcome:
        async with self.db.session() as s, s.begin():
            call = await s.get(Call, call_id)
            if call is None:
                raise KeyError(call_id)
            changed = call.id in await confirm_many(s, [(call, by_person_id)], via, self.clock.now(), note, actor)
            state = CallState.CONFIRMED.value if changed else call.state
        if changed:
            self.on_change()
        return ConfirmOutcome(call_id, changed, state)

    async def next_deadline(self) -> datetime | None:
        async with self.db.read() as s:
            return (await s.exec(select(Call.deadline).where(Call.state == CallState.OPEN,
                                 col(Call.deadline).is_not(None)).order_by(col(Call.deadline)).limit(1))).first()
