"""The one owner of the `deliveries` table's rows and state transitions.

A delivery is one message to one recipient on one channel (domain.DeliveryState):

    pending ──claim──► sending ──provider accepted──► sent ──report──► delivered | failed
       ▲                  │  └──permanent error / given up──► failed
       └──retry later─────┘  (a crash leaves it in `sending`: in doubt until looked up)
    pending | sending ──moot (confirmed, lifted, superseded)──► cancelled

Every transition here is a compare-and-swap on the state the caller read, inside the
caller's transaction, and appends its event in the same transaction. Rows are created only
through `new_row` (the idempotency key names exactly one message, so nothing is planned twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import DeliveryState, PersonView, Purpose
from warnd.db.models import Delivery
from warnd.engine import events
from warnd.engine.messages import address_for

T = Delivery.__table__  # type: ignore[attr-defined]  # Core table for bulk statements


def new_row(alert_id: int | None, call_id: int | None, step: str | None, person: PersonView, channel: str,
            purpose: Purpose, rung: int | None, body: str, now: datetime, *, key: str | None = None,
            to_address: str | None = None) -> dict[str, Any]:
    """One outbox row. The idempotency key names exactly one message: alert, call, recipient,
    channel, purpose and ladder rung; the unique index makes a second plan of it impossible."""
    return dict(
        idempotency_key=key or (f"a{alert_id if alert_id is not None else '-'}:c{call_id if call_id is not None else '-'}"
                                f":p{person.id}:{channel}:{purpose.value}:{rung if rung is not None else '-'}"),
        alert_id=alert_id, call_id=call_id, person_id=person.id, channel=channel, purpose=purpose.value,
        step=step, rung=rung, to_address=to_address if to_address is not None else address_for(person, channel),
        body=body, state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now, created_at=now,
    )


async def insert_rows(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Core bulk insert: a county-wide imminent step is thousands of rows."""
    if rows:
        await (await s.connection()).execute(insert(Delivery), list(rows))
    return len(rows)


async def cancel_pending(s: AsyncSession, *, alert_id: int | None = None, call_ids: Iterable[int] | None = None,
                         purposes: Iterable[Purpose] | None = None,
                         except_purposes: Iterable[Purpose] = ()) -> int:
    """Messages not yet handed to a provider that are moot now (confirmed, lifted, superseded)."""
    q = update(T).where(T.c.state == DeliveryState.PENDING.value)
    if alert_id is not None:
        q = q.where(T.c.alert_id == alert_id)
    if call_ids is not None:
        ids = list(call_ids)
        if not ids:
            return 0
        q = q.where(T.c.call_id.in_(ids))
    if purposes is not None:
        q = q.where(T.c.purpose.in_([p.value for p in purposes]))
    excluded = [p.value for p in except_purposes]
    if excluded:
        q = q.where(T.c.purpose.not_in(excluded))
    res = await (await s.connection()).execute(q.values(state=DeliveryState.CANCELLED.value))
    return int(res.rowcount or 0)


async def move(s: AsyncSession, delivery_id: int | None, expect: DeliveryState, *, token: str | None = None,
               **values: object) -> bool:
    """Compare-and-swap one row from `expect` (and, for `sending` rows, this sender's claim
    token); True when this caller moved it."""
    if "state" in values and isinstance(values["state"], DeliveryState):
        values["state"] = values["state"].value
    q = update(T).where(T.c.id == delivery_id, T.c.state == expect.value)
    if token is not None:
        q = q.where(T.c.claim == token)
    res = await (await s.connection()).execute(q.values(**values))
    return bool(res.rowcount == 1)


async def claim(s: AsyncSession, ids: Sequence[int], *, lease_until: datetime, context: str,
                token: str) -> set[int]:
    """pending → sending for the rows still pending, marked with this sender's claim token;
    returns the ids this caller claimed (from the update itself). On PostgreSQL rows another
    instance is claiming right now are skipped, not waited for (`FOR UPDATE SKIP LOCKED`):
    several senders never block or deadlock on each other's batches."""
    free = select(T.c.id).where(T.c.id.in_(list(ids)), T.c.state == DeliveryState.PENDING.value).with_for_update(
        skip_locked=True)
    res = await (await s.connection()).execute(update(T).where(
        T.c.id.in_(free.scalar_subquery()), T.c.state == DeliveryState.PENDING.value).values(
        state=DeliveryState.SENDING.value, attempts=T.c.attempts + 1, lease_until=lease_until,
        send_context=context, claim=token).returning(T.c.id))
    return {r[0] for r in res}


async def take_over(s: AsyncSession, d: Delivery, *, now: datetime, lease_until: datetime, token: str,
                    ignore_lease: bool = False) -> bool:
    """Take a row left in `sending` whose lease ran out (its sender crashed or hangs): from now
    on only this caller may resolve it. The original sender, if alive, finds its claim gone
    and records nothing. `ignore_lease`: at start-up of a single-instance deployment every
    `sending` row is a crashed predecessor's."""
    q = update(T).where(T.c.id == d.id, T.c.state == DeliveryState.SENDING.value,
                        T.c.claim.is_not_distinct_from(d.claim))
    if not ignore_lease:
        q = q.where(T.c.lease_until <= now)
    res = await (await s.connection()).execute(q.values(claim=token, lease_until=lease_until))
    if res.rowcount == 1:
        d.claim, d.lease_until = token, lease_until
        return True
    return False


async def mark_sent(s: AsyncSession, sent: Sequence[tuple[Delivery, str, str]], now: datetime, token: str,
                    event: str = "delivery_sent") -> list[Delivery]:
    """sending → sent with the provider's id for rows still claimed by `token`. Returns the
    rows this statement really moved (RETURNING): a row another instance took over (lease
    expired) and resolved, or one already recorded, is not this caller's to record — not
    even when it now carries this caller's token from another attempt."""
    if not sent:
        return []
    conn = await s.connection()
    res = await conn.execute(update(T).where(
        T.c.id.in_([d.id for d, _, _ in sent]), T.c.state == DeliveryState.SENDING.value,
        T.c.claim == token).values(state=DeliveryState.SENT.value, sent_at=now, lease_until=None,
                                   last_error=None).returning(T.c.id))
    mine = {r[0] for r in res}
    moved = [d for d, _, _ in sent if d.id in mine]
    if not moved:
        return []
    by_id = {d.id: (p, pid) for d, p, pid in sent}
    await conn.execute(update(T).where(T.c.id == bindparam("did")).values(
        provider=bindparam("prov"), provider_id=bindparam("pid")),
        [{"did": d.id, "prov": by_id[d.id][0], "pid": by_id[d.id][1]} for d in moved])
    events.record_many(s, [events.row(
        now, event, alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id, person_id=d.person_id,
        channel=d.channel, purpose=d.purpose, provider=by_id[d.id][0], provider_id=by_id[d.id][1],
        attempt=d.attempts) for d in moved])
    return moved


async def mark_in_doubt(s: AsyncSession, d: Delivery, error: str, look_up_at: datetime, now: datetime, *,
                        token: str, provider: str | None = None) -> bool:
    """A send with no definite answer (timeout, reset, 5xx after the request was written): it
    stays `sending`, held by `token` until `look_up_at`, when it is looked up with the
    provider (Outbox.recover_in_doubt) — never sent again before that."""
    if not await move(s, d.id, DeliveryState.SENDING, token=token, last_error=error[:2000], lease_until=look_up_at):
        return False
    events.record(s, now, "delivery_in_doubt", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, channel=d.channel, provider=provider, reason="in_doubt", error=error,
                  attempt=d.attempts, look_up_at=look_up_at.isoformat())
    return True


async def give_back(s: AsyncSession, d: Delivery, now: datetime, token: str) -> bool:
    """A claimed row whose send was not started (too little of its lease left): back to
    pending, the attempt not counted. No event: nothing was attempted."""
    res = await (await s.connection()).execute(update(T).where(
        T.c.id == d.id, T.c.state == DeliveryState.SENDING.value, T.c.claim == token).values(
        state=DeliveryState.PENDING.value, attempts=T.c.attempts - 1, lease_until=None, next_attempt_at=now))
    return bool(res.rowcount == 1)


async def mark_failed(s: AsyncSession, d: Delivery, error: str, now: datetime, *,
                      expect: DeliveryState = DeliveryState.SENDING, token: str | None = None,
                      reason: str = "other", provider: str | None = None) -> bool:
    """`reason`: channels.base.ERROR_REASONS, `provider`: the channel's provider (both for
    warnd_provider_error_reasons)."""
    if not await move(s, d.id, expect, token=token, state=DeliveryState.FAILED, last_error=error[:2000],
                      lease_until=None):
        return False
    events.record(s, now, "delivery_failed", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, channel=d.channel, purpose=d.purpose, provider=provider, reason=reason,
                  error=error, attempts=d.attempts)
    return True


async def retry_later(s: AsyncSession, d: Delivery, error: str, at: datetime, now: datetime, *,
                      expect: DeliveryState = DeliveryState.SENDING, token: str | None = None,
                      reason: str = "other", provider: str | None = None) -> bool:
    if not await move(s, d.id, expect, token=token, state=DeliveryState.PENDING, last_error=error[:2000],
                      lease_until=None, next_attempt_at=at):
        return False
    events.record(s, now, "delivery_retry", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, channel=d.channel, provider=provider, reason=reason, error=error,
                  attempt=d.attempts, next_attempt_at=at.isoformat())
    return True


async def mark_moot(s: AsyncSession, d: Delivery, reason: str, now: datetime, *, token: str) -> bool:
    """A message that failed while its warning ended or its call closed: nothing to deliver."""
    if not await move(s, d.id, DeliveryState.SENDING, token=token, state=DeliveryState.CANCELLED,
                      last_error=reason[:2000], lease_until=None):
        return False
    events.record(s, now, "delivery_moot", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, channel=d.channel, reason=reason, attempts=d.attempts)
    return True


async def fail_over(s: AsyncSession, d: Delivery, to_channel: str, to_address: str, error: str, now: datetime, *,
                    token: str) -> bool:
    """A message failing on its channel for too long: this row fails (`delivery_failed_over`)
    and the same message is planned on `to_channel` (a second provider, the next channel)."""
    if not await move(s, d.id, DeliveryState.SENDING, token=token, state=DeliveryState.FAILED,
                      last_error=f"failed over to {to_channel}: {error}"[:2000], lease_until=None):
        return False
    row = dict(idempotency_key=f"{d.idempotency_key}>{to_channel}"[:128], alert_id=d.alert_id, call_id=d.call_id,
               person_id=d.person_id, channel=to_channel, purpose=d.purpose, step=d.step, rung=d.rung,
               to_address=to_address, body=d.body, state=DeliveryState.PENDING.value, attempts=0,
               next_attempt_at=now, created_at=now)
    await insert_rows(s, [row])
    events.record(s, now, "delivery_failed_over", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, channel=d.channel, to_channel=to_channel, error=error,
                  attempts=d.attempts)
    return True


async def bring_forward(s: AsyncSession, channel: str, now: datetime) -> int:
    """Pending rows of a channel that recovered: due now (the backlog goes out at once, most
    urgent first, instead of each waiting out its back-off). No event: nothing was attempted."""
    res = await (await s.connection()).execute(update(T).where(
        T.c.channel == channel, T.c.state == DeliveryState.PENDING.value, T.c.next_attempt_at > now).values(
        next_attempt_at=now))
    return int(res.rowcount or 0)


async def schedule_probe(s: AsyncSession, channel: str, at: datetime) -> int | None:
    """A failing channel's pending row that is tried first, at `at` (or sooner, if due
    sooner): while the provider is down one message probes it every little while, so its
    recovery is seen at once and not when the longest back-off ends. Returns its id."""
    first = (await s.exec(select(Delivery.id).where(
        Delivery.channel == channel, Delivery.state == DeliveryState.PENDING.value).order_by(
        col(Delivery.next_attempt_at), col(Delivery.id)).limit(1))).first()
    if first is None:
        return None
    await (await s.connection()).execute(update(T).where(
        T.c.id == first, T.c.state == DeliveryState.PENDING.value, T.c.next_attempt_at > at).values(
        next_attempt_at=at))
    return first


async def defer(s: AsyncSession, rows: Sequence[tuple[int, datetime]]) -> None:
    """Pending rows put off (per-recipient spacing): no event, nothing was attempted."""
    if rows:
        await (await s.connection()).execute(
            update(T).where(T.c.id == bindparam("did"), T.c.state == DeliveryState.PENDING.value).values(
                next_attempt_at=bindparam("at")), [{"did": i, "at": at} for i, at in rows])


async def extend_lease(s: AsyncSession, d: Delivery, until: datetime, token: str) -> bool:
    return await move(s, d.id, DeliveryState.SENDING, token=token, lease_until=until)


async def release(s: AsyncSession, d: Delivery, now: datetime, token: str) -> bool:
    """An in-doubt send the provider has no record of: back to pending, sent again."""
    if not await move(s, d.id, DeliveryState.SENDING, token=token, state=DeliveryState.PENDING,
                      next_attempt_at=now, lease_until=None):
        return False
    events.record(s, now, "delivery_released", alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id,
                  person_id=d.person_id, attempt=d.attempts)
    return True


async def apply_report(s: AsyncSession, d: Delivery, delivered: bool, error: str | None, now: datetime) -> bool:
    """A final report (handset received / could not be reached) for `d`, attached to `s`.
    A duplicate (already final) changes nothing. True when the row changed."""
    if d.state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        return False
    values: dict[str, Any] = ({"state": DeliveryState.DELIVERED.value, "delivered_at": now} if delivered
                              else {"state": DeliveryState.FAILED.value, "last_error": error or "undelivered"})
    res = await (await s.connection()).execute(update(T).where(
        T.c.id == d.id, T.c.state.not_in([DeliveryState.DELIVERED.value, DeliveryState.FAILED.value])).values(**values))
    if res.rowcount != 1:
        return False
    d.state = values["state"]
    events.record(s, now, "delivery_delivered" if delivered else "delivery_undelivered",
                  alert_id=d.alert_id, call_id=d.call_id, delivery_id=d.id, person_id=d.person_id,
                  channel=d.channel, error=error, **({} if delivered else {"provider": d.provider,
                                                                          "reason": "undelivered"}))
    return True


async def by_provider_id(s: AsyncSession, provider: str, provider_id: str) -> Delivery | None:
    return (await s.exec(select(Delivery).where(Delivery.provider == provider,
                                                Delivery.provider_id == provider_id))).first()


async def by_provider_ids(s: AsyncSession, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Delivery]:
    """The deliveries these (provider, provider id) pairs name, in one query per 500."""
    out: dict[tuple[str, str], Delivery] = {}
    wanted = set(keys)
    ids = sorted({pid for _, pid in wanted})
    for i in range(0, len(ids), 500):
        for d in (await s.exec(select(Delivery).where(col(Delivery.provider_id).in_(ids[i:i + 500])))).all():
            if (d.provider or "", d.provider_id or "") in wanted:
                out[(d.provider or "", d.provider_id or "")] = d
    return out


async def rung_states(s: AsyncSession, call_id: int, rung: int) -> list[str]:
    """States of every first-send or escalation message of one rung of one call."""
    from sqlalchemy import func

    return list((await s.exec(select(Delivery.state).where(
        Delivery.call_id == call_id, func.coalesce(Delivery.rung, 0) == rung,
        col(Delivery.purpose).in_([Purpose.WARNING, Purpose.ESCALATION])))).all())


async def cancel_ids(s: AsyncSession, ids: Sequence[int], now: datetime, event: str, **data: Any) -> list[int]:
    """pending → cancelled for these rows (a more urgent message took their place); returns the
    ids this caller moved, each with its event."""
    if not ids:
        return []
    res = await (await s.connection()).execute(update(T).where(
        T.c.id.in_(list(ids)), T.c.state == DeliveryState.PENDING.value).values(
        state=DeliveryState.CANCELLED.value).returning(T.c.id, T.c.alert_id))
    moved = [(r[0], r[1]) for r in res]
    events.record_many(s, [events.row(now, event, alert_id=a, delivery_id=i, **data) for i, a in moved])
    return [i for i, _ in moved]
