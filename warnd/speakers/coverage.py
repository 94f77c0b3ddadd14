"""Loudspeaker coverage and fleet health, read from the database (the arithmetic is in
warnd.core.speakers)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from warnd.core.domain import CallState
from warnd.core.speakers import FleetHealth, SpeakerCoverage, coverage, fleet
from warnd.db.engine import Database
from warnd.db.models import Alert, Call, Speaker, SpeakerCommand

__all__ = ["FleetHealth", "SpeakerCoverage", "coverage_by_step", "fleet_health", "loudspeaker_coverage",
           "speaker_coverage"]


async def speaker_coverage(db: Database, alert_id: int | None = None, step: str | None = None) -> SpeakerCoverage:
    """Coverage of one alert, or of every alert at `step`, or of everything. Villages are
    counted per warning (a village in two warnings counts twice)."""
    async with db.read() as s:
        q = select(SpeakerCommand.alert_id, SpeakerCommand.village_code, SpeakerCommand.state, SpeakerCommand.late)
        if alert_id is not None:
            q = q.where(SpeakerCommand.alert_id == alert_id)
        if step is not None:
            q = q.where(SpeakerCommand.step == step)
        rows = (await s.exec(q)).all()
        alert_ids = sorted({a for a, _, _, _ in rows})
        if alert_id is not None and alert_id not in alert_ids:
            alert_ids.append(alert_id)
        states: list[str] = []
        if alert_ids:
            companions = select(Alert.id).where(col(Alert.fallback_for_id).in_(alert_ids))
            states = list((await s.exec(select(Call.state).where(
                col(Call.alert_id).in_(companions.scalar_subquery())))).all())
    return coverage(rows, alert_ids, fallback_calls=len(states),
                    fallback_confirmed=sum(1 for st in states if st == CallState.CONFIRMED))


async def coverage_by_step(db: Database) -> dict[str, SpeakerCoverage]:
    async with db.read() as s:
        steps = (await s.exec(select(SpeakerCommand.step).distinct())).all()
    return {st: await speaker_coverage(db, step=st) for st in sorted(steps)}


async def fleet_health(db: Database, now: datetime, stale_after_seconds: float = 180) -> FleetHealth:
    async with db.read() as s:
        rows = (await s.exec(select(Speaker).where(Speaker.active == True))).all()  # noqa: E712
    return fleet([(sp.device_id, sp.region_code, sp.online, sp.last_seen_at, sp.hb_interval_s) for sp in rows],
                 now, timedelta(seconds=stale_after_seconds))


async def loudspeaker_coverage(db: Database, alert_id: int) -> dict[str, object]:
    """One warning's loudspeaker coverage as `GET /api/v1/alerts/{id}` shows it: commands per
    outcome, villages reached (a speaker played inside the ack window) and not, and the manual
    fallback calls opened for the dark ones."""
    c = await speaker_coverage(db, alert_id)
    return {
        "devices": c.devices, "played": c.played, "played_late": c.late, "failed": c.failed, "no_ack": c.no_ack,
        "expired": c.expired, "in_flight": c.in_flight, "villages": c.villages,
        "villages_reached": c.villages_reached, "villages_not_reached": c.not_reached,
        "fallback_calls": c.fallback_calls, "fallback_confirmed": c.fallback_confirmed,
    }
