"""`expires` passing ends a warning the same way a Cancel does: every pending escalation
stops and everyone already reached is told it is lifted. The alert's state becomes
`expired`. Runs on the engine's clock (ManualClock in tests, ScaledClock in drills)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from sqlmodel import col, select

from warnd.clock import Clock
from warnd.core.domain import AlertState
from warnd.db.engine import Database
from warnd.db.models import Alert
from warnd.engine import events
from warnd.engine.ingest import Ingestor

log = structlog.get_logger("warnd.feeds")

ERROR_BACKOFF_SECONDS = 1.0


class ExpiryWorker:
    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor):
        self.db, self.clock, self.ingestor = db, clock, ingestor
        self.wake = asyncio.Event()

    async def expire_due(self) -> list[int]:
        """End every active warning whose `expires` has passed. Returns their ids."""
        now = self.clock.now()
        async with self.db.session() as s:
            due = (await s.exec(select(Alert.id).where(
                Alert.state == AlertState.ACTIVE, col(Alert.expires).is_not(None),
                col(Alert.expires) <= now).order_by(col(Alert.expires)))).all()
        if not due:
            return []
        roster = await self.ingestor.roster.get()  # before any transaction: SQLite has one writer
        done: list[int] = []
        for alert_id in due:
            async with self.db.session() as s, s.begin():
                alert = await s.get(Alert, alert_id)
                # Re-checked inside the transaction: a Cancel or Update may have won.
                if alert is None or alert.state != AlertState.ACTIVE or alert.expires is None \
                        or alert.expires > now:
                    continue
                cancelled, notices = await self.ingestor.cancel_in_session(
                    s, alert, roster, now, reason=f"expired at {alert.expires.isoformat()}")
                alert.state = AlertState.EXPIRED
                events.record(s, now, "alert_expired", alert_id=alert.id, expires=alert.expires.isoformat(),
                              calls_cancelled=cancelled, notices=notices)
            done.append(alert_id)  # type: ignore[arg-type]
        if done:
            log.info("warnings expired", alerts=done)
            self.ingestor.on_change()
        return done

    async def next_expiry(self) -> datetime | None:
        async with self.db.session() as s:
            return (await s.exec(select(Alert.expires).where(
                Alert.state == AlertState.ACTIVE, col(Alert.expires).is_not(None)).order_by(
                col(Alert.expires)).limit(1))).first()

    async def run(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.expire_due()
                nxt = await self.next_expiry()
            except Exception:
                log.exception("expiry pass failed; retrying")
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            await self.clock.wait_until(nxt, self.wake)
