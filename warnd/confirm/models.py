"""Tables of confirm links and feedback (migration 0004_confirm)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from warnd.db.models import UTCDateTime


class ConfirmLink(SQLModel, table=True):
    """A signed link sent to one person about one call. Only the SHA-256 of the token is
    stored: a copy of the database does not let anyone confirm. `purpose` is "confirm" (the
    link in the message) or "feedback" (issued on the page after 收到, for the 反馈 form).
    Each token works once (`used_at`) and not after `expires_at`."""

    __tablename__ = "confirm_links"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    purpose: str = Field(max_length=16)
    call_id: int = Field(index=True)
    alert_id: int = Field(index=True)
    person_id: int  # the recipient: confirms (on behalf of the official) as this person
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class Feedback(SQLModel, table=True):
    """反馈: what an official reports having done for a call."""

    __tablename__ = "feedback"
    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(index=True)
    alert_id: int = Field(index=True)
    person_id: int
    region_code: str = Field(max_length=20)
    actions: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    people_moved: int = 0
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    via: str = "link"
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
