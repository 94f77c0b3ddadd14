"""The migrated schema behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from warnd.db.engine import Database, upgrade
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


def test_people_migration_moves_stored_landlines_to_the_second_number(tmp_path: Path) -> None:
    """Before 0005 the importer stored a landline in people.phone, where SMS was sent to it."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = create_engine(url)
    rows = [("A", "+8613800000001"), ("B", "+867451234567"), ("C", "+861012345678"), ("D", "+8614712345678")]
    with engine.begin() as conn:
        for key, phone in rows:
            conn.execute(text("INSERT INTO people (key, name, phone, role, region_code, active) "
                              "VALUES (:k, :k, :p, 'duty_officer', '430999', true)"), {"k": key, "p": phone})
    upgrade(url)
    with engine.connect() as conn:
        got = {k: (p, p2) for k, p, p2 in conn.execute(text("SELECT key, phone, phone2 FROM people"))}
    engine.dispose()
    assert got == {
        "A": ("+8613800000001", None),  # mobile stays
        "B": ("", "+867451234567"),  # Huaihua landline moves
        "C": ("", "+861012345678"),  # Beijing landline (+8610…) moves, though it starts +861
        "D": ("+8614712345678", None),
    }
