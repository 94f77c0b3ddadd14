"""Database tables (SQLModel). Every state change also appends an Event row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC — identical behaviour on SQLite and PostgreSQL."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def json_dict() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Region(SQLModel, table=True):
    __tablename__ = "regions"
    code: str = Field(primary_key=True, max_length=20)
    name: str
    level: str = Field(index=True)  # domain.Level
    parent_code: str | None = Field(default=None, index=True)
    geometry_wkt: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime | None = ts()


class Person(SQLModel, table=True):
    __tablename__ = "people"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=64)  # stable upsert key (编号, else phone)
    name: str
    phone: str = Field(index=True, max_length=32)  # E.164, e.g. +8613800000000
    role: str = Field(index=True)
    region_code: str = Field(index=True)
    deputy_key: str | None = None  # 替补人, by key so import order does not matter
    wecom_userid: str | None = None
    active: bool = True
    updated_at: datetime | None = ts()


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("sender", "identifier", name="uq_alert_source"),)
    id: int | None = Field(default=None, primary_key=True)
    sender: str
    identifier: str
    sent: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str  # domain.AlertStatus
    msg_type: str  # domain.MsgType
    references: list[Any] = json_list()  # [[sender, identifier, sent], ...]
    source: str = "api"  # api | cli | feed name
    hazard: str
    colour: str
    step: str
    event: str = ""
    sender_name: str = ""
    headline: str = ""
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    instruction: str = Field(default="", sa_column=Column(Text, nullable=False))
    area_desc: str = ""
    onset: datetime | None = ts()
    expires: datetime | None = ts()
    region_codes: list[Any] = json_list()  # covered codes (expanded)
    unknown_codes: list[Any] = json_list()
    state: str = Field(default="active", index=True)  # domain.AlertState
    supersedes_id: int | None = None
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    raw_xml: str = Field(default="", sa_column=Column(Text, nullable=False))


class Call(SQLModel, table=True):
    """One 叫应 obligation: official × alert (an alert is one 631 step)."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("alert_id", "person_id", name="uq_call_alert_person"),
        Index("ix_calls_due", "state", "deadline"),
    )
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alerts.id", index=True)
    person_id: int = Field(foreign_key="people.id", index=True)
    step: str
    role: str
    region_code: str
    ladder: str
    channels: list[Any] = json_list()
    state: str = "open"  # domain.CallState
    deadline: datetime | None = ts()
    window_seconds: int = 0  # confirm window; the clock restarts when the warning is sent
    level: int = 0  # ladder rungs fired so far
    fence: int = 0  # bumped on every transition: stale timers/webhooks compare against it
    short_code: str = Field(index=True, max_length=12)
    confirmed_at: datetime | None = ts()
    confirmed_via: str | None = None
    confirmed_by_id: int | None = None
    note: str | None = None
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Delivery(SQLModel, table=True):
    """One message to one recipient on one channel. The outbox: rows are created in the same
    transaction as the decision that needs them, then sent by the outbox worker."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "state", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=128)
    alert_id: int | None = Field(default=None, index=True)
    call_id: int | None = Field(default=None, index=True)
    person_id: int = Field(index=True)
    channel: str
    purpose: str  # domain.Purpose
    step: str | None = None
    rung: int | None = None
    to_address: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    state: str = "pending"  # pending | sending | sent | delivered | failed
    send_context: str | None = None  # what the provider echoes for it (batch key or own key)
    provider: str | None = None
    provider_id: str | None = Field(default=None, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = ts()
    lease_until: datetime | None = ts()
    last_error: str | None = None
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = ts()
    delivered_at: datetime | None = ts()


class Inbound(SQLModel, table=True):
    """Every inbound webhook message, deduplicated by the provider's identity for it."""

    __tablename__ = "inbound"
    id: int | None = Field(default=None, primary_key=True)
    provider: str
    dedupe_key: str = Field(unique=True, max_length=128)
    from_address: str = Field(index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    outcome: str = ""


class Event(SQLModel, table=True):
    """Append-only log. Never updated, never deleted."""

    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    kind: str = Field(index=True)
    alert_id: int | None = Field(default=None, index=True)
    call_id: int | None = Field(default=None, index=True)
    delivery_id: int | None = None
    person_id: int | None = None
    data: dict[str, Any] = json_dict()
