"""The migrated schema behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from warnd.db.engine import Database
from warnd.db.models import Alert


def _alert(identifier: str) -> Alert:
    now = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    return Alert(
        sender="qx@county", identifier=identifier, sent=now, status="Actual", msg_type="Alert",
        hazard="rainstorm", colour="yellow", step="warning", received_at=now,
    )


async def test_datetimes_round_trip_as_aware_utc(db: Database) -> None:
    async with db.session() as s, s.begin():
        s.add(_alert("a1"))
    async with db.session() as s:
        row = (await s.exec(select(Alert))).one()
    assert row.sent == datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert row.sent.tzinfo is not None


async def test_same_sender_and_identifier_is_rejected_by_the_schema(db: Database) -> None:
    async with db.session() as s, s.begin():
        s.add(_alert("dup"))
    with pytest.raises(IntegrityError):
        async with db.session() as s, s.begin():
            s.add(_alert("dup"))
