"""Expiry: `expires` passing ends a warning the same way a Cancel does (warnd.engine.alerts.lift):
every pending escalation stops and everyone already reached is told it is lifted; the
alert's state becomes `expired`. Runs on the engine's clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlmodel import col, select

from warnd.clock import Clock
from warnd.core.domain import AlertState
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert
from warnd.engine import alerts
from warnd.engine.messages import Composer
from warnd.engine.module import ModuleBase
from warnd.engine.roster import RosterCache

log = structlog.get_logger("warnd.expiry")


class Expiry(ModuleBase):
    name = "expiry"
    poll_seconds = 30.0  # warnings accepted by another instance send no wake

    def __init__(self, db: Database, clock: Clock, roster: RosterCache, templates: Templates, roles: Roles,
                 on_change: Callable[[], None] = lambda: None):
        super().__init__()
        self.db, self.clock, self.roster, self.templates, self.roles = db, clock, roster, templates, roles
        self.on_change = on_change

    async def step(self) -> bool:
        return bool(await self.expire_due())

    async def expire_due(self) -> list[int]:
        """End every active warning whose `expires` has passed. Returns their ids."""
        now = self.clock.now()
        async with self.db.read() as s:
            due = (await s.exec(select(Alert.id).where(
                Alert.state == AlertState.ACTIVE, col(Alert.expires).is_not(None),
                col(Alert.expires) <= now).order_by(col(Alert.expires)))).all()
        if not due:
            return []
        roster = await self.roster.get()  # before any transaction: SQLite has one writer
        done: list[int] = []
        for alert_id in due:
            async with self.db.session() as s, s.begin():
                # Re-checked inside the transaction: a Cancel or Update may have won. Locked,
                # and skipped when another instance is ending it right now (PostgreSQL).
                alert = (await s.exec(select(Alert).where(
                    Alert.id == alert_id, Alert.state == AlertState.ACTIVE).with_for_update(skip_locked=True))).first()
                if alert is None or alert.expires is None or alert.expires > now:
                    continue
                lifted = await alerts.lift(s, alert, AlertState.EXPIRED, now,
                                           reason=f"expired at {alert.expires.isoformat()}", roster=roster,
                                           composer=Composer(self.templates, self.roles, None),
                                           event="alert_expired", expires=alert.expires.isoformat())
            if lifted is not None and alert_id is not None:
                done.append(alert_id)
        if done:
            log.info("warnings expired", alerts=done)
            self.on_change()
        return done

    async def next_due(self) -> datetime | None:
        async with self.db.read() as s:
            return (await s.exec(select(Alert.expires).where(
                Alert.state == AlertState.ACTIVE, col(Alert.expires).is_not(None)).order_by(
                col(Alert.expires)).limit(1))).first()
