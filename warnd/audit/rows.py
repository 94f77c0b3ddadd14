"""What the report is computed from: plain rows read from the database (warnd.audit.load).

The computation (warnd.audit.compute) takes only these, does no I/O, and can be tested with
rows written by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Scope:
    """One warning (`alert_id`) or a storm: every warning accepted in [start, end)."""

    alert_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class AlertRow:
    id: int
    identifier: str
    status: str
    msg_type: str
    source: str
    hazard: str
    colour: str
    step: str
    headline: str
    received_at: datetime
    state: str


@dataclass(frozen=True)
class EventRow:
    id: int
    at: datetime
    kind: str
    alert_id: int | None
    call_id: int | None
    delivery_id: int | None
    person_id: int | None
    data: dict[str, Any]


@dataclass(frozen=True)
class CallRow:
    id: int
    alert_id: int
    person_id: int
    step: str
    role: str
    region_code: str
    state: str
    level: int
    created_at: datetime
    note: str | None = None


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    alert_id: int | None
    call_id: int | None
    person_id: int
    channel: str
    purpose: str
    step: str | None
    rung: int | None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class SpeakerCommandRow:
    id: int
    cmd_id: str
    alert_id: int
    device_id: str
    village_code: str
    step: str
    state: str
    reason: str | None
    late: bool
    fallback: bool


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    call_id: int
    alert_id: int
    people_moved: int


@dataclass(frozen=True)
class RegionRow:
    code: str
    name: str
    level: str
    parent_code: str | None
    geometry_wkt: str | None = None


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str
    phone: str
    role: str
    region_code: str


@dataclass(frozen=True)
class SpeakerCheck:
    """warnd.speakers.service.speaker_coverage of one warning, for the reconciliation table."""

    played: int
    villages: int
    villages_reached: int


@dataclass(frozen=True)
class PublicTargetRow:
    """One number in a warning's danger zone and what the public planner decided for it."""

    alert_id: int
    village_code: str
    decision: str  # send | deferred | opted_out | over_budget | displaced
    delivery_id: int | None


@dataclass
class AuditInput:
    scope: Scope
    generated_at: datetime
    alerts: list[AlertRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    speaker_commands: list[SpeakerCommandRow] = field(default_factory=list)
    feedback: list[FeedbackRow] = field(default_factory=list)
    regions: dict[str, RegionRow] = field(default_factory=dict)
    people: dict[int, PersonRow] = field(default_factory=dict)
    role_labels: dict[str, str] = field(default_factory=dict)
    speaker_checks: dict[int, SpeakerCheck] = field(default_factory=dict)
    public_targets: list[PublicTargetRow] = field(default_factory=list)
