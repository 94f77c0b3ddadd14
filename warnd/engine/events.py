"""Append-only event log: every state change writes one row in the same transaction.

`record` only buffers the row on the session; a `before_commit` hook inserts the session's
buffer in one bulk statement. The rows commit (or roll back) with the change they describe,
and a fan-out that records thousands of events does not build thousands of ORM objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import event, insert
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.db.models import Event

log = structlog.get_logger("warnd")

_BUFFER = "warnd_events"


def row(at: datetime, kind: str, *, alert_id: int | None = None, call_id: int | None = None,
        delivery_id: int | None = None, person_id: int | None = None, **data: Any) -> dict[str, Any]:
    return dict(at=at, kind=kind, alert_id=alert_id, call_id=call_id, delivery_id=delivery_id,
                person_id=person_id, data=data)


def record(
    s: AsyncSession, at: datetime, kind: str, *, alert_id: int | None = None,
    call_id: int | None = None, delivery_id: int | None = None, person_id: int | None = None,
    **data: Any,
) -> None:
    s.info.setdefault(_BUFFER, []).append(row(at, kind, alert_id=alert_id, call_id=call_id,
                                              delivery_id=delivery_id, person_id=person_id, **data))


def record_many(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    s.info.setdefault(_BUFFER, []).extend(rows)


@event.listens_for(Session, "before_commit")
def _write_buffered(session: Session) -> None:
    rows = session.info.pop(_BUFFER, None)
    if rows:
        session.execute(insert(Event), rows)


@event.listens_for(Session, "after_rollback")
def _drop_buffered(session: Session) -> None:
    session.info.pop(_BUFFER, None)
