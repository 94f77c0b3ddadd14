"""Settings (warnd.toml): defaults here, overridden by the file, then by environment variables
for secrets. warnd/defaults/warnd.example.toml is the annotated example.

Every section is a frozen pydantic model: unknown keys and wrong types are refused with one
line each (`/etc/warnd/warnd.toml: server.port: must be a whole number, not '8080'`). Code
builds settings with keyword arguments and changes them with `model_copy(update=...)`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic.config import JsonDict

from channels.mqtt import MqttSettings
from warnd.config.errors import ConfigError
from warnd.config.files import DEFAULT_FILES, ConfigLocation, find_config, locate
from warnd.config.validation import List, Strict, as_tuple, problem, read_toml, validate
from warnd.core.domain import Step

SECRET: JsonDict = {"secret": True}


def _steps(v: Any) -> Any:
    if isinstance(v, list | tuple):
        known = [s.value for s in Step]
        for i, step in enumerate(v):
            if step not in known:
                raise problem(f"unknown step {step!r} (use {', '.join(known)})", i)
    return as_tuple(v)


Steps = Annotated[tuple[str, ...], BeforeValidator(_steps)]  # json_schema_extra of a field `warnd config show` masks


def secret(default: str = "") -> Any:
    return Field(default=default, json_schema_extra=SECRET)


class Section(Strict):
    pass


class County(Section):
    code: str = "431222"
    name: str = "沅陵县"
    sender_name: str = "沅陵县防汛抗旱指挥部"


class DatabaseCfg(Section):
    url: str = Field(default="sqlite:///warnd.db", json_schema_extra=SECRET)  # may hold a password
    durable: bool = True  # SQLite synchronous=FULL; false only for throwaway demo databases
    # PostgreSQL connections this process may hold (pool_size, plus max_overflow at a peak).
    # A province runs many counties' databases on one server: counties × instances ×
    # (pool_size + max_overflow) must stay under the server's max_connections (docs/province.md).
    pool_size: int = Field(default=10, ge=1, le=100)
    max_overflow: int = Field(default=10, ge=0, le=100)


class ServerCfg(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8080"
    # This instance's name when several share one database (docs/operations.md, "Several
    # instances"): stable across its restarts and unique among them. Empty: a single instance.
    instance: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,32}$")
    # Limits per client (docs/operations.md, "HTTP limits and hostile input").
    max_connections: int = Field(default=1000, ge=1)  # open at once; at the limit the oldest one still sending is dropped
    max_connections_per_client: int = Field(default=256, ge=1)  # per peer address (behind a proxy: the proxy's limits)
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # request line and headers (and idle keep-alive)
    body_timeout_seconds: float = Field(default=10.0, gt=0)  # webhooks, forms and JSON bodies
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)  # webhooks, forms and JSON bodies, before any signature
    large_body_timeout_seconds: float = Field(default=120.0, gt=0)  # CAP messages (up to 5 MiB)
    large_bodies_at_once: int = Field(default=4, ge=1)  # CAP bodies being received at the same time


class ApiCfg(Section):
    tokens: List = Field(default=(), json_schema_extra=SECRET)


class MetricsCfg(Section):
    """GET /metrics for Prometheus (docs/operations.md, "Metrics"). A scraper authenticates
    with one of `tokens` (Authorization: Bearer); admins and auditors may read it too."""

    tokens: List = Field(default=(), json_schema_extra=SECRET)
    # A scrape within this many seconds of the last one is answered from the same snapshot
    # (each snapshot runs a dozen counting queries; several scrapers must not multiply them).
    cache_seconds: float = Field(default=2.0, ge=0)


class AuthCfg(Section):
    """Console logins (docs/console.md). Times are wall-clock, whatever [clock] says."""

    session_idle_minutes: float = Field(default=240, gt=0)  # a session unused this long ends
    session_max_hours: float = Field(default=24, gt=0)  # and none lives longer than this
    lockout_failures: int = Field(default=5, ge=1)  # failed logins for one account name within lockout_minutes
    lockout_address_failures: int = Field(default=20, ge=1)  # failed logins from one client address
    lockout_minutes: float = Field(default=15, gt=0)


class ClockCfg(Section):
    spec: str = "system"


class PolicyCfg(Section):
    """Paths of the policy files; empty: the file beside warnd.toml, else the package's."""

    path: str = ""
    roles: str = ""
    templates: str = ""
    vocabulary: str = ""


class RosterCfg(Section):
    headers: str = ""  # roster header aliases (roster-headers.toml)


class DeliveryCfg(Section):
    """How the outbox sends (docs/sms-providers.md, "Faults and outages")."""

    max_attempts: int = Field(default=6, ge=1)  # transient failures before giving up — only for messages
    # tied to no warning still in force (a warning's messages are retried until it ends or its call closes)
    backoff_seconds: float = Field(default=10, gt=0)
    backoff_max_seconds: float = Field(default=300, gt=0)
    recipient_min_interval_seconds: float = 20
    concurrency: int = Field(default=32, ge=1)
    # 0: automatic, twice the longest provider timeout plus the margin (times a scaled clock's
    # speed); otherwise at least the longest provider timeout plus the margin, or warnd refuses to start.
    lease_seconds: float = Field(default=0, ge=0)
    # Wall seconds a lease holds beyond the provider's timeout: claim to send, send to the commit.
    lease_margin_seconds: float = Field(default=10, gt=0)
    reply_help_interval_seconds: float = 1800
    # A send with no definite answer on a channel that cannot be asked (lookup = "none"):
    # "resend" (a duplicate is better than a missed warning) or "fail" (the ladder moves on).
    in_doubt_without_lookup: Literal["resend", "fail"] = "resend"
    # A message still failing (provider down, refusing) this long after it was planned moves to
    # the next channel: `failover` (channel → channel), else [sms] backup_provider for "sms",
    # else the next channel of the policy's `channels`. 0: never.
    failover_after_seconds: float = Field(default=600, ge=0)
    failover: dict[str, str] = Field(default_factory=dict)


class IngestCfg(Section):
    """What an incoming warning must satisfy before anything is stored (docs/feeds.md)."""

    # A message with no `expires` sent longer ago than this is stale, not disseminated.
    max_age_without_expires_hours: float = Field(default=24, gt=0)
    # `sent` further in the future than this (a wrong clock, a forged message) is refused.
    max_future_minutes: float = Field(default=15, ge=0)
    # Whose warnings a sender may update or cancel besides its own: sender → [senders].
    # E.g. the county duty room over its own feeds: {"431222_YJJ" = ["431222_QXT@hn.cma.gov.cn"]}.
    may_supersede: dict[str, list[str]] = Field(default_factory=dict)


class TencentCfg(Section):
    secret_id: str = ""
    secret_key: str = secret()
    sdk_app_id: str = ""
    sign_name: str = ""
    template_id: str = ""
    region: str = "ap-guangzhou"
    endpoint: str = ""
    callback_token: str = secret()
    timeout_seconds: float = Field(default=15, gt=0)  # the SDK's request timeout (connect, then each read)


class TwilioCfg(Section):
    account_sid: str = ""
    auth_token: str = secret()
    from_number: str = ""
    api_base_url: str = ""


class SmsCfg(Section):
    provider: Literal["tencent", "twilio"] = "tencent"
    # A second SMS provider (channel "sms_backup", from its own [sms.<provider>] section):
    # messages failing on the first move to it after [delivery] failover_after_seconds.
    backup_provider: Literal["", "tencent", "twilio"] = ""
    tencent: TencentCfg = TencentCfg()
    twilio: TwilioCfg = TwilioCfg()


class SpeakersCfg(MqttSettings, Section):
    """Village loudspeakers over MQTT (docs/mqtt.md): the broker connection (MqttSettings,
    flat in [speakers]) and how warnings are played."""

    enabled: bool = False
    client_id: str = ""  # default: warnd-{county code}
    password: str = secret()  # or WARND_MQTT_PASSWORD
    steps: Steps = ("imminent",)  # 631 steps at which speakers play
    ack_window_seconds: float = 300  # `played` must arrive within this (clock time)
    command_ttl_seconds: float = 3600  # a command expires at min(warning expiry, issue + ttl)
    stale_after_seconds: float = 180  # no heartbeat/state for this long: stale
    repeat: int = 3
    volume: int = 90
    voice: str = "female"
    fallback_roles: List = ("village_secretary", "village_head", "group_leader")
    fallback_confirm_minutes: float = 10
    fallback_ladder: str = "standard"
    fallback_channels: List = ("sms",)

    def mqtt(self, county_code: str, instance: str = "") -> MqttSettings:
        """The connection settings; the client id defaults to warnd-{county code}, and each of
        several instances connects as its own client ({client id}-{instance})."""
        values = {k: getattr(self, k) for k in MqttSettings.model_fields}
        base = self.client_id or f"warnd-{county_code}"
        values["share_group"] = self.share_group or base
        values["client_id"] = base + (f"-{instance}" if instance else "")
        return MqttSettings(**values)


class FeedsCfg(Section):
    sources: str = ""  # sources.toml: CAP push/poll and telemetry sources (empty: none)
    stations: str = ""  # stations.toml: telemetry stations and thresholds (empty: none)
    # SL 651-2014 station gateway (docs/feeds.md): "host:port" to listen on ("0.0.0.0:5005"), "" = off.
    sl651_tcp: str = Field(default="", pattern=r"^$|^[^\s]*:\d{1,5}$")
    sl651_udp: str = Field(default="", pattern=r"^$|^[^\s]*:\d{1,5}$")
    sl651_idle_seconds: float = Field(default=300.0, gt=0)  # a silent TCP connection is closed


class VoiceCfg(Section):
    """Voice calls (智能外呼) through Twilio Voice; provider "" = no voice channel. Empty
    credentials fall back to [sms.twilio]."""

    provider: Literal["", "twilio"] = ""
    account_sid: str = ""
    auth_token: str = secret()
    from_number: str = ""
    api_base_url: str = ""
    ring_seconds: int = 30
    gather_seconds: int = 8
    attempts: int = 2


class WeComCfg(Section):
    """WeChat Work (企业微信) application; enabled = false: no "wecom" channel."""

    enabled: bool = False
    corp_id: str = ""
    corp_secret: str = secret()
    agent_id: int = 0
    token: str = secret()  # callback Token
    encoding_aes_key: str = secret()  # callback EncodingAESKey (43 characters)
    api_base_url: str = ""  # empty: https://qyapi.weixin.qq.com
    max_per_second: float = 20
    per_user_per_minute: int = 30


class ReportCfg(Section):
    """Audit reports (warnd report, docs/audit.md)."""

    coverage_target: float = Field(default=0.95, gt=0, le=1)  # share of places to reach; the plans ask ≥ 95 %
    labels: str = ""  # an edited copy of report.toml (empty: the shipped texts)
    html_template: str = ""  # an edited copy of report.html.j2
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)  # times in reports are local (Beijing time)


class PublicBudgetCfg(Section):
    """One provider's limits for public SMS (docs/public.md): per number, and its request rate."""

    same_text_interval_seconds: float = Field(default=30, ge=0)  # Tencent: same text, same number
    per_day: int = Field(default=10, ge=1)  # Tencent's default; Alibaba Cloud: 50 per 24 h
    window_hours: float = Field(default=24, gt=0)
    qps: float | None = Field(default=None, gt=0)  # messages a second (None: the channel's own rate)
    burst: float | None = Field(default=None, ge=1)


def _default_budgets() -> dict[str, PublicBudgetCfg]:
    return {"tencent": PublicBudgetCfg(), "twilio": PublicBudgetCfg(same_text_interval_seconds=0, per_day=50),
            "aliyun": PublicBudgetCfg(same_text_interval_seconds=0, per_day=50)}


class PublicCfg(Section):
    """Reaching the public (warnd.public); when is decided by policy.toml's [[public]] rules."""

    enabled: bool = True
    coverage_target: float = Field(default=0.95, gt=0, le=1)  # 预警信息公众覆盖率 ≥ 95 %
    max_delay_minutes: float = Field(default=60, gt=0)  # a later public SMS is worthless: over budget
    budgets: dict[str, PublicBudgetCfg] = Field(default_factory=_default_budgets)  # by provider
    plan_chunk: int = Field(default=1000, ge=1)  # targets per transaction while planning (SQLite: one writer)

class ConsoleCfg(Section):
    """The console's 发布预警 (docs/console.md): warnings composed there are CAP documents from
    this sender, ingested with source "console" under the composing user's name."""

    cap_sender: str = ""  # CAP <sender> of composed warnings; empty: warnd-console@{county code}
    compose_texts: str = ""  # compose.toml: the joint texts (气象预警 + 防御指引); empty: shipped
    default_hours: float = Field(default=12, ge=1, le=72)  # validity offered on the form

    def sender(self, county_code: str) -> str:
        return self.cap_sender or f"warnd-console@{county_code}"


class Settings(Section):
    county: County = County()
    database: DatabaseCfg = DatabaseCfg()
    server: ServerCfg = ServerCfg()
    api: ApiCfg = ApiCfg()
    metrics: MetricsCfg = MetricsCfg()
    auth: AuthCfg = AuthCfg()
    clock: ClockCfg = ClockCfg()
    policy: PolicyCfg = PolicyCfg()
    roster: RosterCfg = RosterCfg()
    delivery: DeliveryCfg = DeliveryCfg()
    ingest: IngestCfg = IngestCfg()
    sms: SmsCfg = SmsCfg()
    voice: VoiceCfg = VoiceCfg()
    wecom: WeComCfg = WeComCfg()
    feeds: FeedsCfg = FeedsCfg()
    speakers: SpeakersCfg = SpeakersCfg()
    report: ReportCfg = ReportCfg()
    public: PublicCfg = PublicCfg()

    console: ConsoleCfg = ConsoleCfg()


# Environment variable → the setting it fills (secrets stay out of files).
ENV_SETTINGS: dict[str, str] = {
    "WARND_DATABASE_URL": "database.url",
    "WARND_API_TOKENS": "api.tokens",  # comma-separated
    "WARND_METRICS_TOKENS": "metrics.tokens",  # comma-separated
    "WARND_TENCENT_SECRET_KEY": "sms.tencent.secret_key",
    "WARND_TWILIO_AUTH_TOKEN": "sms.twilio.auth_token",
    "WARND_WECOM_CORP_SECRET": "wecom.corp_secret",
    "WARND_WECOM_AES_KEY": "wecom.encoding_aes_key",
    "WARND_MQTT_PASSWORD": "speakers.password",
}


def _env_value(name: str, value: str) -> Any:
    if name in ("WARND_API_TOKENS", "WARND_METRICS_TOKENS"):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def _put(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *tables, key = dotted.split(".")
    for t in tables:
        nxt = raw.setdefault(t, {})
        if not isinstance(nxt, dict):  # a scalar where a table belongs: validation says so
            return
        raw = nxt
    raw[key] = value


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """setting → environment variable, for those set (and non-empty) in `env`."""
    return {key: name for name, key in ENV_SETTINGS.items() if env.get(name)}


def load_config(arg: str | None = None, env: Mapping[str, str] | None = None) -> tuple[Settings, ConfigLocation]:
    """The settings as the command line finds them (--config, WARND_CONFIG, /etc/warnd/,
    built-in defaults), and where they were found."""
    env = os.environ if env is None else env
    where = find_config(arg, env)
    return load_settings(where.settings_file or where.directory, env), where


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `path` (a warnd.toml, or a folder holding one; None: built-in defaults)
    and the environment. Relative file paths in the settings are taken from the settings
    file's folder, and a policy file left empty is taken from that folder when it holds one
    (else the package's default is used)."""
    env = os.environ if env is None else env
    where = locate(path, "settings")
    raw: dict[str, Any] = read_toml(where.settings_file, ConfigError) if where.settings_file else {}
    source = str(where.settings_file or path or "settings")
    for name, key in ENV_SETTINGS.items():
        if env.get(name):
            _put(raw, key, _env_value(name, env[name]))
    settings = validate(Settings, raw, source, ConfigError)
    return resolve_files(settings, where.directory)


def resolve_files(settings: Settings, directory: Path | None) -> Settings:
    """File paths made absolute against `directory`; empty policy/roster paths filled with
    the file of that name in `directory` when it exists there."""
    if directory is None:
        return settings
    sections: dict[str, dict[str, str]] = {}
    for dotted in (*DEFAULT_FILES, "feeds.sources", "feeds.stations"):
        section, key = dotted.split(".")
        value = getattr(getattr(settings, section), key)
        if value:
            resolved = str(directory / value) if not Path(value).is_absolute() else value
        elif dotted in DEFAULT_FILES and (directory / DEFAULT_FILES[dotted]).is_file():
            resolved = str(directory / DEFAULT_FILES[dotted])
        else:
            continue
        sections.setdefault(section, {})[key] = resolved
    update = {s: getattr(settings, s).model_copy(update=v) for s, v in sections.items()}
    return settings.model_copy(update=update)
