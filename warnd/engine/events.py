"""Append-only event log: every state change writes one row in the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.db.models import Event

log = structlog.get_logger("warnd")


def record(
    s: AsyncSession, at: datetime, kind: str, *, alert_id: int | None = None,
    call_id: int | None = None, delivery_id: int | None = None, person_id: int | None = None,
    **data: Any,
) -> None:
    s.add(Event(at=at, kind=kind, alert_id=alert_id, call_id=call_id, delivery_id=delivery_id,
                person_id=person_id, data=data))


def row(at: datetime, kind: str, *, alert_id: int | None = None, call_id: int | None = None,
        delivery_id: int | None = None, person_id: int | None = None, **data: Any) -> dict[str, Any]:
    return dict(at=at, kind=kind, alert_id=alert_id, call_id=call_id, delivery_id=delivery_id,
                person_id=person_id, data=data)


async def record_many(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Bulk append (Core insert): the fan-out of one warning writes thousands of events."""
    if rows:
        await (await s.connection()).execute(insert(Event), rows)
