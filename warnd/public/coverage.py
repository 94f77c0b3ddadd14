"""Coverage of the public per warning: targeted, accepted by the provider, delivered, failed by
reason, opted out, over budget, displaced — overall and per village — and the coverage rate
(delivered ÷ targeted) against the configured target. Targeted counts every listed number in
the area that did not opt out (an over-budget number is targeted and not reached)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from warnd.core.domain import DeliveryState
from warnd.db.engine import Database
from warnd.db.models import Delivery, PublicCampaign, PublicTarget, Region

ACCEPTED = (DeliveryState.SENT.value, DeliveryState.DELIVERED.value)


def _rate(delivered: int, targeted: int) -> float | None:
    return round(delivered / targeted, 4) if targeted else None


class _Tally:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def add(self, decision: str, state: str | None, error: str | None, sent: bool) -> None:
        if decision == "opted_out":
            self.c["opted_out"] += 1
            return
        self.c["targeted"] += 1
        if decision in ("over_budget", "displaced"):
            self.c[decision] += 1
            return
        if decision == "deferred":
            self.c["deferred"] += 1
        if state in ACCEPTED or (state == DeliveryState.FAILED.value and sent):
            self.c["accepted"] += 1
        if state == DeliveryState.DELIVERED.value:
            self.c["delivered"] += 1
        elif state == DeliveryState.FAILED.value:
            self.failed[(error or "undelivered")[:120]] += 1
        elif state in (DeliveryState.PENDING.value, DeliveryState.SENDING.value):
            self.c["pending"] += 1
        elif state == DeliveryState.CANCELLED.value:
            self.c["cancelled"] += 1

    def body(self, target: float) -> dict[str, Any]:
        c = self.c
        rate = _rate(c["delivered"], c["targeted"])
        return {"targeted": c["targeted"], "accepted": c["accepted"], "delivered": c["delivered"],
                "failed": sum(self.failed.values()), "failed_by_reason": dict(self.failed),
                "pending": c["pending"], "deferred": c["deferred"], "opted_out": c["opted_out"],
                "over_budget": c["over_budget"], "displaced": c["displaced"], "cancelled": c["cancelled"],
                "coverage": rate, "coverage_target": target, "meets_target": rate is not None and rate >= target}


async def public_coverage(db: Database, alert_id: int, target: float) -> dict[str, Any] | None:
    """The public side of one warning (None when the warning never reached for the public)."""
    async with db.read() as s:
        campaign = await s.get(PublicCampaign, alert_id)
        if campaign is None:
            return None
        P, D = PublicTarget.__table__.c, Delivery.__table__.c  # type: ignore[attr-defined]
        rows = (await (await s.connection()).execute(sa_select(
            P.village_code, P.decision, D.state, D.last_error, D.sent_at).select_from(
            PublicTarget.__table__.outerjoin(Delivery.__table__, D.id == P.delivery_id)).where(  # type: ignore[attr-defined]
            P.alert_id == alert_id))).all()
        names = dict((await s.exec(select(Region.code, Region.name).where(
            col(Region.code).in_(list({r[0] for r in rows}))))).all()) if rows else {}
    overall = _Tally()
    villages: dict[str, _Tally] = {}
    for village, decision, state, error, sent_at in rows:
        for t in (overall, villages.setdefault(village, _Tally())):
            t.add(decision, state, error, sent_at is not None)
    return {"state": campaign.state, "rule": campaign.rule, "kinds": campaign.kinds, **overall.body(target),
            "villages": [{"code": code, "name": names.get(code, code), **t.body(target)}
                         for code, t in sorted(villages.items())]}
