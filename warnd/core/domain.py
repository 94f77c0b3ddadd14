"""Plain value types shared by the pure decision logic (policy, targeting, planner, 叫应).

Nothing here does I/O. The database layer (warnd.db.models) stores these values; the
pure functions take and return these types so they can be tested without a database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Step(enum.StrEnum):
    """The 631 step of a warning: lead time before onset."""

    FORECAST = "forecast"  # 6 h — 预报
    WARNING = "warning"  # 3 h — 预警
    IMMINENT = "imminent"  # 1 h — 临灾预警

    @property
    def hours(self) -> int:
        return {Step.FORECAST: 6, Step.WARNING: 3, Step.IMMINENT: 1}[self]

    @property
    def rank(self) -> int:
        """Higher is more urgent (used to tell whether an Update raises the step)."""
        return {Step.FORECAST: 0, Step.WARNING: 1, Step.IMMINENT: 2}[self]


class Colour(enum.StrEnum):
    BLUE = "blue"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return [Colour.BLUE, Colour.YELLOW, Colour.ORANGE, Colour.RED].index(self)

    @property
    def zh(self) -> str:
        return {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}[self.value]


class Level(enum.StrEnum):
    """Administrative level of a region. Codes: 6-digit county, 9 township, 12 village,
    15 group (our convention: village code + 3 digits; 组 have no national code)."""

    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GROUP = "group"

    @property
    def depth(self) -> int:
        return [Level.COUNTY, Level.TOWNSHIP, Level.VILLAGE, Level.GROUP].index(self)

    @property
    def code_length(self) -> int:
        return {Level.COUNTY: 6, Level.TOWNSHIP: 9, Level.VILLAGE: 12, Level.GROUP: 15}[self]


class AlertStatus(enum.StrEnum):
    """CAP <status>. Only ACTUAL counts in real statistics."""

    ACTUAL = "Actual"
    EXERCISE = "Exercise"  # 演练
    SYSTEM = "System"
    TEST = "Test"  # 测试
    DRAFT = "Draft"


class MsgType(enum.StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class AlertState(enum.StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"  # an Update replaced it
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    OUT_OF_AREA = "out_of_area"  # recorded, targets nothing in this county: nobody is called


class CallState(enum.StrEnum):
    OPEN = "open"  # waiting for 应; deadline set
    CONFIRMED = "confirmed"
    DUTY_ROOM = "duty_room"  # ladder exhausted: the duty room owns it (still confirmable)
    CANCELLED = "cancelled"  # warning lifted/superseded before confirmation


class ApprovalKind(enum.StrEnum):
    """What waits for a second person (the two-person rule, warnd/engine/approvals.py)."""

    PUBLISH = "publish"  # a red or imminent warning composed by hand
    CANCEL = "cancel"  # lifting a warning


class ApprovalState(enum.StrEnum):
    PENDING = "pending"  # waiting for an approver other than its author
    APPROVED = "approved"  # approved; the warning went out / was lifted
    REJECTED = "rejected"  # an approver said no: nothing happened
    FAILED = "failed"  # approved, but the ingest refused it (e.g. expired meanwhile, already lifted)


class Action(enum.StrEnum):
    """One rung of an escalation ladder."""

    RESEND = "resend"  # send the same official the warning again
    DEPUTY = "deputy"  # send to their deputy (替补人)
    SUPERIOR = "superior"  # send to their superior (derived from region hierarchy)
    DUTY_ROOM = "duty_room"  # hand to the duty room: terminal rung


class ConfirmVia(enum.StrEnum):
    SMS_REPLY = "sms_reply"
    VOICE = "voice"
    WECOM = "wecom"
    LINK = "link"
    DUTY_OFFICER = "duty_officer"  # the duty officer phoned and recorded it


class DeliveryState(enum.StrEnum):
    """One outbox row's life: pending → sending (claimed, leased) → sent (the provider accepted
    it) → delivered | failed (final report); pending | sending → cancelled (moot) or failed."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by one sender; after a crash: in doubt until looked up
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.CANCELLED)


# A warning may already be with the recipient in these states (a lifted notice must follow it).
REACHED_STATES = (DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.DELIVERED)


class CommandState(enum.StrEnum):
    """One loudspeaker play command: pending (not yet accepted by the broker) → sent (PUBACK)
    → received → playing → played; or failed (the device said so), no_ack (no `played` inside
    the ack window), expired (never published: the warning expired first), cancelled (the
    warning was lifted before publishing)."""

    PENDING = "pending"
    SENT = "sent"
    RECEIVED = "received"
    PLAYING = "playing"
    PLAYED = "played"
    FAILED = "failed"
    NO_ACK = "no_ack"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Purpose(enum.StrEnum):
    """Why a delivery exists."""

    WARNING = "warning"  # first send of the warning to a called official
    ESCALATION = "escalation"  # resend / deputy / superior rung
    CANCEL_NOTICE = "cancel_notice"  # 预警解除 to everyone already reached
    GAP_NOTICE = "gap_notice"  # a role resolved to nobody: tell the duty room
    REPLY_HELP = "reply_help"  # polite instruction after an unparseable reply
    SILENT_NOTICE = "silent_notice"  # ladder exhausted: tell the duty room
    DUTY_NOTICE = "duty_notice"  # something stops a warning reaching people: tell the duty room
    PUBLIC = "public"  # a warning to a member of the public (warnd.public): tracked, never 叫应


@dataclass(frozen=True)
class RegionView:
    code: str
    name: str
    level: Level
    parent_code: str | None
    geometry_wkt: str | None = None  # POINT or POLYGON in lon/lat (WGS84)


@dataclass(frozen=True)
class PersonView:
    """An official. `phone` is their mobile ("" when they have none: SMS cannot reach them);
    `phone2` a second number for voice (联系电话: an office landline or another mobile).
    `role` is their first role; `extra_roles` the others one person may hold (一肩挑: a
    村支书 who is also 村主任 is one person, called once)."""

    id: int
    name: str
    phone: str
    role: str
    region_code: str
    deputy_id: int | None = None
    wecom_userid: str | None = None
    phone2: str | None = None
    extra_roles: tuple[str, ...] = ()

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role, *self.extra_roles)


@dataclass(frozen=True)
class AlertFacts:
    """What the planner needs to know about an accepted alert."""

    id: int
    hazard: str
    colour: Colour
    step: Step
    status: AlertStatus
    region_codes: frozenset[str]  # every region code the area covers (already expanded)
    sent: datetime
    onset: datetime | None = None
    expires: datetime | None = None


@dataclass(frozen=True)
class PlannedDelivery:
    person_id: int
    channel: str
    purpose: Purpose
    call_person_id: int | None = None  # the called official this delivery belongs to


@dataclass(frozen=True)
class PlannedCall:
    person_id: int
    role: str
    region_code: str
    deadline: datetime
    ladder: str  # name of the ladder in the policy
    channels: tuple[str, ...]


@dataclass(frozen=True)
class CoverageGap:
    """A role the policy requires in a region that resolved to nobody."""

    region_code: str
    role: str
    level: Level


@dataclass(frozen=True)
class Plan:
    calls: tuple[PlannedCall, ...]
    deliveries: tuple[PlannedDelivery, ...]
    gaps: tuple[CoverageGap, ...] = field(default_factory=tuple)
