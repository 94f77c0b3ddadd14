"""No silent failure: anything that stops a warning reaching a person is said three ways at
once — an error-level log line with the reason, an event, and a notice (SMS, from the
`duty_notice` template) to whoever is on duty in the county duty room.

    await notify_duty_room(s, roster, templates, now, kind="provider_failing",
                           details="短信平台连续拒绝发送（签名未审核）", key="provider:tencent:2026-07-01T02",
                           provider="tencent", error=...)

`key` de-duplicates: the same condition noticed again (another pass, another instance) sends
no second SMS. When the duty room itself is empty, that is said too: it is a failure of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import Purpose
from warnd.core.templates import Templates
from warnd.db.models import Delivery
from warnd.engine import deliveries, events
from warnd.engine.messages import DRILL_TAGS
from warnd.engine.roster import RosterSnapshot

log = structlog.get_logger("warnd.notices")


async def notify_duty_room(s: AsyncSession, roster: RosterSnapshot, templates: Templates, now: datetime, *,
                           kind: str, details: str, key: str, alert_id: int | None = None,
                           drill_status: str = "", channel: str = "sms", **data: Any) -> int:
    """Inside the caller's transaction. Returns how many notices were queued (0 when they
    were already queued for `key`, or when nobody is on duty — which is then reported).
    `channel`: what the notice goes out on (a failing SMS provider's notice: its backup)."""
    log.error(kind.replace("_", " "), details=details, alert=alert_id, **data)
    events.record(s, now, kind, alert_id=alert_id, details=details, **data)
    officers = roster.duty_officers()
    if not officers:
        log.error("duty room has no duty officer: a notice reaches nobody", about=kind, details=details)
        events.record(s, now, "duty_room_empty", alert_id=alert_id, about=kind, details=details)
        return 0
    body = templates.render("duty_notice", tag=DRILL_TAGS.get(drill_status, ""), details=details)
    rows = [deliveries.new_row(alert_id, None, None, o, channel, Purpose.DUTY_NOTICE, None, body, now,
                               key=f"notice:{key}:p{o.id}", to_address=o.phone) for o in officers]
    return await insert_once(s, rows)


async def insert_once(s: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert delivery rows, skipping any whose idempotency key already exists (a notice
    already queued by another pass or instance). Returns how many were new."""
    if not rows:
        return 0
    conn = await s.connection()
    dialect = conn.dialect.name
    table = Delivery.__table__  # type: ignore[attr-defined]
    ins = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))
    res = await conn.execute(ins.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(table.c.id),
                             rows)
    return len(res.all())
