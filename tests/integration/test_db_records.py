"""Records as an operator reads them: time-zone-aware timestamps (PostgreSQL timestamptz,
also after migrating a database that stored naive UTC) and Chinese kept readable in event
JSON, on both backends."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlmodel import select

from warnd.db.engine import Database, upgrade
from warnd.db.models import Event
from warnd.engine import events

BEIJING = timezone(timedelta(hours=8))
AT = datetime(2026, 7, 1, 22, 30, 15, 123456, tzinfo=BEIJING)  # 14:30:15 UTC


async def test_event_time_and_chinese_data_are_stored_readably(db: Database) -> None:
    async with db.session() as s, s.begin():
        events.record(s, AT, "gap_notice", region="沅陵县官庄镇辰龙关村", reason="无村支书")
    async with db.session() as s:
        ev = (await s.exec(select(Event))).one()
        raw = (await s.exec(text("SELECT CAST(data AS TEXT) FROM events"))).one()[0]  # type: ignore[call-overload]
    assert ev.at == AT and ev.at.tzinfo is UTC  # the same instant, returned in UTC
    assert ev.data == {"region": "沅陵县官庄镇辰龙关村", "reason": "无村支书"}
    assert "沅陵县官庄镇辰龙关村" in raw and "\\u" not in raw, raw


@pytest.mark.postgres
async def test_postgres_timestamps_are_timestamptz(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        naive = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema = current_schema() "
                             "AND data_type = 'timestamp without time zone'").fetchall()
        aware = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = "
                             "current_schema() AND data_type = 'timestamp with time zone'").fetchone()
    assert naive == []
    assert aware is not None and aware[0] > 20  # every table's times


def _heads_without(removed: str, others: set[str]) -> list[str]:
    """The revisions to record once `removed` is undone: its parents, less any that another
    recorded revision already descends from (alembic refuses overlapping heads)."""
    from alembic.script import ScriptDirectory

    from warnd.db.engine import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    parents = scripts.get_revision(removed).down_revision
    parents = [parents] if isinstance(parents, str) else list(parents or ())
    covered = {a.revision for o in others for a in scripts.iterate_revisions(o, "base")}
    return [p for p in parents if p not in covered]


@pytest.mark.postgres
async def test_migration_reads_stored_naive_times_as_utc_whatever_the_session_zone(pg_url: str) -> None:
    """A database migrated before 0012 stored UTC wall time in `timestamp` columns. Put one
    back in that state (the migration's own downgrade), under a server zone that is not UTC,
    then upgrade: every instant is unchanged."""
    db_url = pg_url
    db = Database(db_url)
    try:
        async with db.session() as s, s.begin():
            events.record(s, AT, "probe", note="迁移前")
    finally:
        await db.close()
    dbname = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" SET timezone TO \'Asia/Shanghai\'')  # type: ignore[arg-type]
    with psycopg.connect(db_url, autocommit=True) as conn:
        cols = conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE "
                            "table_schema = current_schema() AND data_type = 'timestamp with time zone'").fetchall()
        for table, column in cols:
            conn.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE timestamp '  # type: ignore[arg-type]
                         f"USING \"{column}\" AT TIME ZONE 'UTC'")
        conn.execute("DELETE FROM alembic_version WHERE version_num = '0012_timestamptz'")
        for rev in _heads_without("0012_timestamptz", {r[0] for r in conn.execute(
                "SELECT version_num FROM alembic_version").fetchall()}):
            conn.execute("INSERT INTO alembic_version VALUES (%s)", (rev,))
        stored = conn.execute("SELECT at FROM events").fetchone()
    assert stored is not None and stored[0] == datetime(2026, 7, 1, 14, 30, 15, 123456)  # naive UTC

    upgrade(db_url)

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT at, current_setting('TimeZone') FROM events").fetchone()
        versions = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version").fetchall()}
    assert row is not None and row[1] == "Asia/Shanghai"
    assert row[0] == AT  # psycopg returns it in the session's zone: the same instant
    assert "0012_timestamptz" in versions
    db = Database(db_url)
    try:
        async with db.session() as s:
            ev = (await s.exec(select(Event))).one()
    finally:
        await db.close()
    assert ev.at == AT and ev.at.tzinfo is UTC


def test_upgrade_does_not_chatter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    upgrade(f"sqlite:///{tmp_path / 'quiet.db'}")
    assert not [r for r in caplog.records if r.name.startswith("alembic")]
    upgrade(f"sqlite:///{tmp_path / 'loud.db'}", verbose=True)
    assert any("Running upgrade" in r.getMessage() for r in caplog.records if r.name.startswith("alembic"))
