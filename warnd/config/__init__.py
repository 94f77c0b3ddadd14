"""Configuration: where it is found (files), the settings (warnd.toml), and the loaders that
read and check each file into the values the rest of warnd uses. Every file is validated by
a pydantic model; every mistake is one line naming the file, the key and what is wrong."""

from warnd.config.errors import (
    ConfigError,
    PolicyError,
    RolesError,
    SettingsError,
    SourcesError,
    StationsError,
    TemplateError,
    VocabularyError,
)
from warnd.config.files import ConfigLocation, find_config, package_default
from warnd.config.policy import load_policy, parse_policy
from warnd.config.roles import load_roles
from warnd.config.settings import (
    ApiCfg,
    AuthCfg,
    ClockCfg,
    ConsoleCfg,
    County,
    DatabaseCfg,
    DeliveryCfg,
    FeedsCfg,
    IngestCfg,
    MetricsCfg,
    PolicyCfg,
    ReportCfg,
    RosterCfg,
    ServerCfg,
    Settings,
    SmsCfg,
    SpeakersCfg,
    TencentCfg,
    TwilioCfg,
    VoiceCfg,
    WeComCfg,
    load_settings,
)
from warnd.config.sources import load_sources, parse_sources
from warnd.config.stations import load_stations, parse_stations
from warnd.config.templates import load_templates
from warnd.config.vocabulary import load_vocabulary, load_wording

__all__ = [
    "ApiCfg",
    "AuthCfg",
    "ClockCfg",
    "ConfigError",
    "ConfigLocation",
    "ConsoleCfg",
    "County",
    "DatabaseCfg",
    "DeliveryCfg",
    "FeedsCfg",
    "IngestCfg",
    "MetricsCfg",
    "PolicyCfg",
    "PolicyError",
    "ReportCfg",
    "RolesError",
    "RosterCfg",
    "ServerCfg",
    "Settings",
    "SettingsError",
    "SmsCfg",
    "SourcesError",
    "SpeakersCfg",
    "StationsError",
    "TemplateError",
    "TencentCfg",
    "TwilioCfg",
    "VocabularyError",
    "VoiceCfg",
    "WeComCfg",
    "find_config",
    "load_policy",
    "load_roles",
    "load_settings",
    "load_sources",
    "load_stations",
    "load_templates",
    "load_vocabulary",
    "load_wording",
    "package_default",
    "parse_policy",
    "parse_sources",
    "parse_stations",
]
