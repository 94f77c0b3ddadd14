"""Where configuration is found.

The settings file and the files beside it (policy, roles, templates, vocabulary, roster
header aliases) are looked for in the first of:

1. `--config PATH` (a warnd.toml, or a folder holding one),
2. the `WARND_CONFIG` environment variable (the same),
3. `/etc/warnd/`, when it exists;

and any of those files not found there comes from the defaults shipped inside the package
(`warnd/defaults/`). `warnd init DIR` writes an editable copy of those defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from warnd.config.errors import ConfigError

PACKAGE_DEFAULTS = Path(__file__).resolve().parent.parent / "defaults"
SYSTEM_DIR = Path("/etc/warnd")
SETTINGS_FILE = "warnd.toml"
EXAMPLE_SETTINGS = "warnd.example.toml"  # written as warnd.toml by `warnd init`

# Settings key (under [policy] or [roster]) → the file's name in a config folder.
DEFAULT_FILES: dict[str, str] = {
    "policy.path": "policy.toml",
    "policy.roles": "roles.toml",
    "policy.templates": "templates.toml",
    "policy.vocabulary": "vocabulary.toml",
    "roster.headers": "roster-headers.toml",
    "report.labels": "report.toml",
    "report.html_template": "report.html.j2",
    "console.compose_texts": "compose.toml",
}


def package_default(name: str) -> Path:
    """A file shipped inside the package (warnd/defaults/NAME)."""
    return PACKAGE_DEFAULTS / name


@dataclass(frozen=True)
class ConfigLocation:
    """Where the settings come from: `settings_file` (None: built-in defaults only) and the
    folder searched for the other files (None: package defaults only)."""

    settings_file: Path | None
    directory: Path | None
    origin: str  # "--config", "WARND_CONFIG", "/etc/warnd" or "built-in defaults"


def locate(path: Path | None, origin: str) -> ConfigLocation:
    """A settings file or a folder holding one (the file may be absent from the folder)."""
    if path is None:
        return ConfigLocation(None, None, "built-in defaults")
    if path.is_dir():
        f = path / SETTINGS_FILE
        return ConfigLocation(f if f.exists() else None, path, origin)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder ({origin})")
    return ConfigLocation(path, path.parent, origin)


def find_config(arg: str | None, env: Mapping[str, str]) -> ConfigLocation:
    if arg:
        return locate(Path(arg), "--config")
    if env.get("WARND_CONFIG"):
        return locate(Path(env["WARND_CONFIG"]), "WARND_CONFIG")
    if SYSTEM_DIR.is_dir():
        return locate(SYSTEM_DIR, str(SYSTEM_DIR))
    return locate(None, "")
