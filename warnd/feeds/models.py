"""Tables of the automated feeds: poll state and seen entries, telemetry readings and
per-station threshold state. Created by migration 0003_feeds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from warnd.db.models import UTCDateTime, ts


class FeedState(SQLModel, table=True):
    """One row per polled source: conditional-request validators, backoff and health."""

    __tablename__ = "feed_state"
    source: str = Field(primary_key=True, max_length=64)
    etag: str | None = None
    last_modified: str | None = None
    last_poll_at: datetime | None = ts()
    last_success_at: datetime | None = ts()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error_at: datetime | None = ts()
    failures: int = 0  # consecutive
    next_poll_at: datetime | None = ts()
    last_entry_at: datetime | None = ts()  # when the newest ingested entry was ingested
    last_lag_seconds: float | None = None  # ingested_at − entry's own time, newest entry
    entries_ingested: int = 0


class FeedEntry(SQLModel, table=True):
    """An entry of a polled feed that has been dealt with (ingested, duplicate or refused).
    Never fetched again: the key includes the entry's <updated>, so a changed entry is new."""

    __tablename__ = "feed_entries"
    __table_args__ = (UniqueConstraint("source", "entry_key", name="uq_feed_entry"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64, index=True)
    entry_key: str = Field(max_length=512)
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    outcome: str  # ingested | duplicate | refused
    alert_id: int | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class TelemetryReading(SQLModel, table=True):
    """Raw readings, deduplicated by (station, metric, time)."""

    __tablename__ = "telemetry_readings"
    __table_args__ = (UniqueConstraint("station", "metric", "at", name="uq_telemetry_reading"),)
    id: int | None = Field(default=None, primary_key=True)
    station: str = Field(max_length=64, index=True)
    metric: str = Field(max_length=16)  # rain_mm | level_m
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    value: float
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class StationState(SQLModel, table=True):
    """Threshold state of one station (see warnd.feeds.thresholds.StationStatus)."""

    __tablename__ = "telemetry_state"
    station: str = Field(primary_key=True, max_length=64)
    level: int = 0  # 0 none, 1 准备转移, 2 立即转移
    evaluated_at: datetime | None = ts()  # time of the newest reading evaluated
    raised_level: int = 0
    raised_at: datetime | None = ts()
    alert_sender: str | None = None
    alert_identifier: str | None = None
    alert_sent: datetime | None = ts()
