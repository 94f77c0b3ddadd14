"""Configuration errors. Each problem is one line, `file: key.path: what is wrong`, so an
operator can fix it without reading code; several problems are several lines."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A configuration file (or setting from the environment) is unusable."""

    @classmethod
    def of(cls, source: str, problems: Sequence[str]) -> ConfigError:
        return cls("\n".join(f"{source}: {p}" for p in problems))

    @property
    def lines(self) -> list[str]:
        return str(self).splitlines() or [type(self).__name__]


class SettingsError(ConfigError):
    """A setting of warnd.toml refused where it is used (a channel checking its credentials);
    the message starts with the key path, the command line adds the settings file."""


class PolicyError(ConfigError):
    """policy.toml"""


class RolesError(ConfigError):
    """roles.toml"""


class TemplateError(ConfigError):
    """templates.toml"""


class VocabularyError(ConfigError):
    """vocabulary.toml"""


class SourcesError(ConfigError):
    """sources.toml"""


class StationsError(ConfigError):
    """stations.toml"""


class StartupError(Exception):
    """A start-up failure outside the configuration files (database, port, input file),
    already worded as one line."""
