"""Settings: embedded defaults, overridden by a TOML file (config/warnd.toml is the
annotated example), then by environment variables for secrets."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class County:
    code: str = "431222"
    name: str = "沅陵县"
    sender_name: str = "沅陵县防汛抗旱指挥部"


@dataclass(frozen=True)
class DatabaseCfg:
    url: str = "sqlite:///warnd.db"
    durable: bool = True  # SQLite synchronous=FULL; false only for throwaway demo databases


@dataclass(frozen=True)
class ServerCfg:
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class ApiCfg:
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClockCfg:
    spec: str = "system"


@dataclass(frozen=True)
class PolicyCfg:
    path: str = ""
    roles: str = ""
    templates: str = ""
    vocabulary: str = ""


@dataclass(frozen=True)
class DeliveryCfg:
    max_attempts: int = 6
    backoff_seconds: float = 10
    backoff_max_seconds: float = 300
    recipient_min_interval_seconds: float = 20
    concurrency: int = 32
    lease_seconds: float = 300
    reply_help_interval_seconds: float = 1800


@dataclass(frozen=True)
class TencentCfg:
    secret_id: str = ""
    secret_key: str = ""
    sdk_app_id: str = ""
    sign_name: str = ""
    template_id: str = ""
    region: str = "ap-guangzhou"
    endpoint: str = ""
    callback_token: str = ""


@dataclass(frozen=True)
class TwilioCfg:
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    api_base_url: str = ""


@dataclass(frozen=True)
class SmsCfg:
    provider: str = "tencent"
    tencent: TencentCfg = field(default_factory=TencentCfg)
    twilio: TwilioCfg = field(default_factory=TwilioCfg)


@dataclass(frozen=True)
class SpeakersCfg:
    """Village loudspeakers over MQTT (docs/mqtt.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # default: warnd-{county code}
    username: str = ""
    password: str = ""  # or WARND_MQTT_PASSWORD
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False  # skip hostname verification (test brokers only)
    keepalive: int = 60
    session_expiry_seconds: int = 86400
    steps: tuple[str, ...] = ("imminent",)  # 631 steps at which speakers play
    ack_window_seconds: float = 300  # `played` must arrive within this (clock time)
    command_ttl_seconds: float = 3600  # a command expires at min(warning expiry, issue + ttl)
    stale_after_seconds: float = 180  # no heartbeat/state for this long: stale
    repeat: int = 3
    volume: int = 90
    voice: str = "female"
    fallback_roles: tuple[str, ...] = ("village_secretary", "village_head", "group_leader")
    fallback_confirm_minutes: float = 10
    fallback_ladder: str = "standard"
    fallback_channels: tuple[str, ...] = ("sms",)
    reconnect_min_seconds: float = 1
    reconnect_max_seconds: float = 30


@dataclass(frozen=True)
class FeedsCfg:
    sources: str = ""  # config/sources.toml: CAP push/poll and telemetry sources (empty: none)
    stations: str = ""  # config/stations.toml: telemetry stations and thresholds (empty: none)


@dataclass(frozen=True)
class VoiceCfg:
    """Voice calls (智能外呼) through Twilio Voice; provider "" = no voice channel. Empty
    credentials fall back to [sms.twilio]."""

    provider: str = ""  # "" | "twilio"
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    api_base_url: str = ""
    ring_seconds: int = 30
    gather_seconds: int = 8
    attempts: int = 2


@dataclass(frozen=True)
class WeComCfg:
    """WeChat Work (企业微信) application; enabled = false: no "wecom" channel."""

    enabled: bool = False
    corp_id: str = ""
    corp_secret: str = ""
    agent_id: int = 0
    token: str = ""  # callback Token
    encoding_aes_key: str = ""  # callback EncodingAESKey (43 characters)
    api_base_url: str = ""  # empty: https://qyapi.weixin.qq.com
    max_per_second: float = 20
    per_user_per_minute: int = 30


@dataclass(frozen=True)
class ReportCfg:
    """Audit reports (warnd report, docs/audit.md)."""

    coverage_target: float = 0.95  # share of places to reach; the plans ask for ≥ 95 %
    labels: str = ""  # an edited copy of config/report.toml (empty: the shipped texts)
    html_template: str = ""  # an edited copy of config/report.html.j2
    utc_offset_hours: float = 8.0  # times in reports are local (Beijing time)


@dataclass(frozen=True)
class Settings:
    county: County = field(default_factory=County)
    database: DatabaseCfg = field(default_factory=DatabaseCfg)
    server: ServerCfg = field(default_factory=ServerCfg)
    api: ApiCfg = field(default_factory=ApiCfg)
    clock: ClockCfg = field(default_factory=ClockCfg)
    policy: PolicyCfg = field(default_factory=PolicyCfg)
    delivery: DeliveryCfg = field(default_factory=DeliveryCfg)
    sms: SmsCfg = field(default_factory=SmsCfg)
    voice: VoiceCfg = field(default_factory=VoiceCfg)
    wecom: WeComCfg = field(default_factory=WeComCfg)
    feeds: FeedsCfg = field(default_factory=FeedsCfg)
    speakers: SpeakersCfg = field(default_factory=SpeakersCfg)
    report: ReportCfg = field(default_factory=ReportCfg)


def _merge(obj: Any, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}{key}: unknown setting")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key}: must be a table")
            changes[key] = _merge(current, value, f"{where}{key}.")
        elif isinstance(current, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{where}{key}: must be a list")
            changes[key] = tuple(value)
        elif isinstance(current, bool) != isinstance(value, bool) or not isinstance(value, type(current)):
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                changes[key] = float(value)
            else:
                raise ConfigError(f"{where}{key}: expected {type(current).__name__}, got {value!r}")
        else:
            changes[key] = value
    return replace(obj, **changes)


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    settings = Settings()
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from e
        settings = _merge(settings, raw, f"{path}: ")
    if env.get("WARND_DATABASE_URL"):
        settings = replace(settings, database=DatabaseCfg(env["WARND_DATABASE_URL"]))
    if env.get("WARND_API_TOKENS"):
        tokens = tuple(t.strip() for t in env["WARND_API_TOKENS"].split(",") if t.strip())
        settings = replace(settings, api=ApiCfg(tokens))
    sms = settings.sms
    if env.get("WARND_TENCENT_SECRET_KEY"):
        sms = replace(sms, tencent=replace(sms.tencent, secret_key=env["WARND_TENCENT_SECRET_KEY"]))
    if env.get("WARND_TWILIO_AUTH_TOKEN"):
        sms = replace(sms, twilio=replace(sms.twilio, auth_token=env["WARND_TWILIO_AUTH_TOKEN"]))
    if env.get("WARND_WECOM_CORP_SECRET") or env.get("WARND_WECOM_AES_KEY"):
        w = settings.wecom
        settings = replace(settings, wecom=replace(
            w, corp_secret=env.get("WARND_WECOM_CORP_SECRET") or w.corp_secret,
            encoding_aes_key=env.get("WARND_WECOM_AES_KEY") or w.encoding_aes_key))
    if env.get("WARND_MQTT_PASSWORD"):
        settings = replace(settings, speakers=replace(settings.speakers, password=env["WARND_MQTT_PASSWORD"]))
    return replace(settings, sms=sms)
