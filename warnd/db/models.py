"""Database tables (SQLModel). Every state change also appends an Event row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out. PostgreSQL stores `timestamptz`; SQLite, which has no
    zone type, stores the UTC wall time as ISO text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    # The mobile in E.164 (+8613800000000); "" for an official with only a landline.
    phone: str = Field(index=True, max_length=32)
    role: str = Field(index=True)  # the first role; further ones in person_extra_roles
    region_code: str = Field(index=True)
    deputy_key: str | None = None  # 替补人, by key so import order does not matter
    wecom_userid: str | None = None
    active: bool = True
    updated_at: datetime | None = ts()
    # A second number for voice (联系电话), E.164: an office landline or another mobile.
    phone2: str | None = Field(default=None, max_length=32)


class PersonExtraRole(SQLModel, table=True):
    """Roles a person holds besides `people.role` (一肩挑: 村党支部书记、村委会主任), in the order
    the roster lists them. One person with two roles is one person: one call per warning."""

    __tablename__ = "person_extra_roles"
    person_id: int = Field(foreign_key="people.id", primary_key=True)
    role: str = Field(primary_key=True, max_length=64)
    position: int = 0


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
    fallback_for_id: int | None = Field(default=None, index=True)  # a loudspeaker fallback: the warning it stands for
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    raw_xml: str = Field(default="", sa_column=Column(Text, nullable=False))
    # GB/T 35965.1 per-method texts, by warnd channel ({"sms": "…", "speaker": "…"}).
    channel_texts: dict[str, Any] = json_dict()


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
    claim: str | None = Field(default=None, max_length=32)  # token of the pass that last moved it
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
    state: str = "pending"  # domain.DeliveryState
    send_context: str | None = None  # what the provider echoes for it (batch key or own key)
    claim: str | None = Field(default=None, max_length=32)  # the sender holding it in `sending`
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


# --- Automated feeds (migration 0003_feeds) ----------------------------------------------------
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
    outcome: str  # ingested | duplicate | out_of_area | refused
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
    """Threshold state of one station (see warnd.core.thresholds.StationStatus)."""

    __tablename__ = "telemetry_state"
    station: str = Field(primary_key=True, max_length=64)
    level: int = 0  # 0 none, 1 准备转移, 2 立即转移
    evaluated_at: datetime | None = ts()  # time of the newest reading evaluated
    raised_level: int = 0
    raised_at: datetime | None = ts()
    alert_sender: str | None = None
    alert_identifier: str | None = None
    alert_sent: datetime | None = ts()


# --- Loudspeakers (migration 0002_speakers) ----------------------------------------------------
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
    hb_interval_s: int | None = None  # the heartbeat interval the device advertises in its state
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
    stop_sent_at: datetime | None = ts()  # the warning was cancelled: its stop command reached the broker
    publish_attempts: int = 0
    fallback: bool = False  # a fallback call was requested for this command's village


# --- Confirm links and 反馈 (migration 0004_confirm) ---------------------------------------------
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


# --- Accounts and identity (migration 0010_users) ----------------------------------------------
class User(SQLModel, table=True):
    """A person who uses the console or the API. Never deleted (the event log names them by
    `name`), only disabled; a disabled user's sessions and tokens stop working at once."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)  # login name; the actor in the event log
    display_name: str = ""  # e.g. 张伟 (shown in the console)
    role: str = Field(max_length=32)  # warnd.auth.permissions.Role
    password_hash: str = Field(sa_column=Column(Text, nullable=False))  # argon2id, PHC string
    active: bool = True
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    disabled_at: datetime | None = ts()
    password_changed_at: datetime | None = ts()
    last_login_at: datetime | None = ts()


class UserSession(SQLModel, table=True):
    """A console login. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "user_sessions"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))  # absolute limit
    ended_at: datetime | None = ts()  # logout, or the user was disabled
    client_addr: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=256)


class ApiToken(SQLModel, table=True):
    """A personal API token for scripts; carries its user's role. Shown once, stored hashed."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(index=True)
    label: str = ""
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime | None = ts()
    last_used_at: datetime | None = ts()
    revoked_at: datetime | None = ts()


class LoginAttempt(SQLModel, table=True):
    """Failed logins, for the lock-out per account name and per client address (names that do
    not exist are counted too, so a lock-out does not reveal which accounts exist)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_name_at", "name", "at"),
                      Index("ix_login_attempts_addr_at", "client_addr", "at"))
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    client_addr: str = Field(max_length=64)
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# --- The public: recipient lists, opt-outs, per-warning targets (migration 0014_public) ---------
class PublicRecipient(SQLModel, table=True):
    """One number on a public list (危险区群众, 网格员, 扫码订阅, 游客/施工人员) in a village or
    group. Re-imports update by (phone, region, kind); opting out is kept apart, by number
    (public_opt_outs), so a re-import never subscribes anyone again."""

    __tablename__ = "public_recipients"
    __table_args__ = (UniqueConstraint("phone", "region_code", "kind", name="uq_public_recipient"),)
    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(max_length=32, index=True)  # E.164 mobile
    name: str = ""
    region_code: str = Field(max_length=20, index=True)  # village (12) or group (15)
    village_code: str = Field(max_length=20, index=True)  # the village it counts under
    kind: str = Field(max_length=32)  # warnd.public.lists.KINDS
    source: str = ""  # where the number came from (村委会摸排, 扫码订阅, 景区登记 …)
    consent_date: str | None = Field(default=None, max_length=10)  # ISO date of the consent, if recorded
    shelter: str = ""  # 转移地点 of the danger point, when the list names one
    list_name: str = Field(default="", max_length=128)  # the file it was imported from (last import)
    active: bool = True
    updated_at: datetime | None = ts()


class PublicOptOut(SQLModel, table=True):
    """A number's own choice about public messages: opted out (回复TD退订, the API) or back in.
    The latest choice wins; every change is also an event (public_opted_out / public_opted_in)."""

    __tablename__ = "public_opt_outs"
    phone: str = Field(primary_key=True, max_length=32)
    opted_out: bool = True
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    channel: str = Field(max_length=32)  # sms_reply | api | import
    actor: str = ""  # the user, or the provider the reply came through


class PublicCampaign(SQLModel, table=True):
    """The public side of one warning: planned once (state planning → planned, or skipped when
    the policy does not reach the public at this step)."""

    __tablename__ = "public_campaigns"
    alert_id: int = Field(primary_key=True)
    state: str = Field(max_length=16)  # planning | planned | skipped
    rule: str = ""  # which public rule chose it
    kinds: list[Any] = json_list()
    targeted: int = 0
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    planned_at: datetime | None = ts()


class PublicTarget(SQLModel, table=True):
    """One number in the danger zone of one warning and what the planner decided for it:
    send / deferred (a delivery row exists), opted_out, over_budget, displaced (a more urgent
    warning took its slot; its delivery was cancelled)."""

    __tablename__ = "public_targets"
    __table_args__ = (UniqueConstraint("alert_id", "phone", name="uq_public_target"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(index=True)
    phone: str = Field(max_length=32)
    village_code: str = Field(max_length=20)
    kind: str = Field(max_length=32)
    decision: str = Field(max_length=16)
    delivery_id: int | None = Field(default=None, index=True)
    planned_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))

# --- The two-person rule (migration 0020_approvals) ---------------------------------------------
class Approval(SQLModel, table=True):
    """A warning composed by hand that must be approved before it goes out (red or imminent),
    or a cancel of a warning. Its transitions belong to warnd/engine/approvals.py:
    pending → approved | rejected; approved → failed when the ingest refuses it."""

    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # domain.ApprovalKind
    state: str = Field(default="pending", max_length=16, index=True)  # domain.ApprovalState
    author: str = Field(max_length=64)  # login name (the event log's actor)
    author_display: str = ""
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # cancel: the warning to lift; publish: the warning once it went out.
    alert_id: int | None = Field(default=None, index=True)
    hazard: str = ""
    colour: str = ""
    step: str = ""
    headline: str = ""
    area_desc: str = Field(default="", sa_column=Column(Text, nullable=False))
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))  # why cancel
    cap_xml: str = Field(default="", sa_column=Column(Text, nullable=False))  # publish: exactly what goes out
    summary: dict[str, Any] = json_dict()  # what the author saw in the preview (reach, SMS segments)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_display: str = ""
    decided_at: datetime | None = ts()
    decision_note: str = Field(default="", sa_column=Column(Text, nullable=False))
    result: dict[str, Any] = json_dict()  # the ingest's answer once approved
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ClockAnchor(SQLModel, table=True):
    """The anchors of a scaled clock (`[clock] spec = "scaled:N"`): clock time `origin` was
    wall time `wall_origin`, and the clock runs `speed` times faster. One row per timeline
    (name "engine"), so a restart, or another instance, continues the same timeline."""

    __tablename__ = "clock_anchor"
    name: str = Field(primary_key=True, max_length=32)
    speed: float
    origin: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    wall_origin: float
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
