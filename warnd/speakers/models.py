"""Loudspeaker tables: the device registry and one row per play command (the durable outbox
of the MQTT channel and the record loudspeaker coverage is computed from)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from warnd.db.models import UTCDateTime, json_list, ts


class Speaker(SQLModel, table=True):
    """A village loudspeaker (应急广播 / 村村响), imported with the roster."""

    __tablename__ = "speakers"
    device_id: str = Field(primary_key=True, max_length=64)  # 设备编号 = MQTT client id
    region_code: str = Field(index=True, max_length=20)  # village (12) or group (15) code
    capabilities: list[Any] = json_list()  # "tts", "audio"
    lon: float | None = None
    lat: float | None = None
    active: bool = True
    # Fleet health, from the device's retained state and heartbeats.
    online: bool | None = None  # None: never heard from
    state_reason: str | None = None  # lwt | shutdown | ...
    state_at: datetime | None = ts()
    last_seen_at: datetime | None = ts()  # last heartbeat, state or ack
    updated_at: datetime | None = ts()


class SpeakerCommand(SQLModel, table=True):
    """One play command to one device for one warning.

    state: pending (not yet accepted by the broker) → sent (PUBACK) → received → playing →
    played; or failed (device said so), expired (never published: the warning expired first),
    no_ack (no `played` inside the ack window), cancelled (warning lifted before publishing).
    """

    __tablename__ = "speaker_commands"
    __table_args__ = (
        UniqueConstraint("alert_id", "device_id", name="uq_speaker_cmd_alert_device"),
        Index("ix_speaker_cmd_state_deadline", "state", "deadline"),
    )
    id: int | None = Field(default=None, primary_key=True)
    cmd_id: str = Field(unique=True, max_length=64)
    alert_id: int = Field(index=True)
    device_id: str = Field(index=True, max_length=64)
    region_code: str = Field(max_length=20)
    village_code: str = Field(index=True, max_length=20)
    step: str
    drill: bool = False
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default="pending", max_length=16)
    reason: str | None = None
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    deadline: datetime | None = ts()  # ack window end (set when the broker accepted it)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = ts()
    received_at: datetime | None = ts()
    played_at: datetime | None = ts()
    late: bool = False  # `played` arrived after the ack window
    publish_attempts: int = 0
    fallback: bool = False  # a fallback call was requested for this command's village
