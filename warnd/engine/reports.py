"""Final delivery reports (handset received / could not be reached), whichever comes first:
the report or our record of the send.

A fast provider can post the report before the outbox has recorded the send's provider id.
Such a report is parked (an `inbound` row keyed by the provider id). Both sides look for the
other *after* their own commit — the outbox once it has recorded sends, the parker once the
park is stored — so at least one of them sees both; the parked row is claimed with a
compare-and-swap, so it is applied exactly once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.db.models import Delivery, Inbound
from warnd.engine import calls, deliveries

PARKED = "parked report"


def report_provider(provider: str) -> str:
    return f"{provider}:report"


async def apply_report(s: AsyncSession, d: Delivery, delivered: bool, error: str | None, now: datetime) -> None:
    """A final report for `d` (attached to `s`); a duplicate (already final) changes nothing.
    When it says the handset could not be reached and every channel of the call's rung is
    now dead, the call escalates at once."""
    if await deliveries.apply_report(s, d, delivered, error, now) and not delivered:
        await calls.bring_forward_if_rung_failed(s, d, now)


async def apply_parked_reports(s: AsyncSession, receipts: list[tuple[int, str, str]], now: datetime) -> int:
    """`receipts`: (delivery id, provider, provider id) of committed sends. Returns how many
    parked reports this call applied."""
    if not receipts:
        return 0
    wanted = {(report_provider(p), pid): did for did, p, pid in receipts}
    parked = (await s.exec(select(Inbound.id, Inbound.provider, Inbound.from_address, Inbound.text).where(
        col(Inbound.provider).in_({p for p, _ in wanted}), Inbound.outcome == PARKED,
        col(Inbound.from_address).in_([pid for _, pid in wanted])))).all()
    applied = 0
    t = Inbound.__table__  # type: ignore[attr-defined]
    for row_id, provider, provider_id, text in parked:
        did = wanted.get((provider, provider_id))
        if did is None:
            continue
        claim = await (await s.connection()).execute(
            update(t).where(t.c.id == row_id, t.c.outcome == PARKED).values(outcome="applied"))
        d = await s.get(Delivery, did)
        if claim.rowcount != 1 or d is None:
            continue  # the other side applied it
        delivered = text == "delivered"
        await apply_report(s, d, delivered, None if delivered else text.removeprefix("failed:"), now)
        applied += 1
    return applied
