"""The report's Chinese texts (warnd/defaults/report.toml): titles, column headers, names of steps,
channels and outcomes. An operator's file overrides the shipped one key by key."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warnd.config.files import package_default


class LabelsError(ValueError):
    pass


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key not in base:
            raise LabelsError(f"{where}{key}: unknown key")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise LabelsError(f"{where}{key}: must be a table")
            out[key] = _merge(base[key], value, f"{where}{key}.")
        elif not isinstance(value, str):
            raise LabelsError(f"{where}{key}: must be text")
        else:
            out[key] = value
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise LabelsError(f"{path}: {e}") from e


@dataclass(frozen=True)
class Labels:
    raw: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.raw["title"])

    def word(self, group: str, key: str | None) -> str:
        """The label of `key` in [group]; the key itself when it has none (a new channel)."""
        if key is None:
            return str(self.raw["words"]["none"])
        return str(self.raw.get(group, {}).get(key, key))

    def table(self, key: str) -> dict[str, Any]:
        return dict(self.raw["tables"][key])


def load_labels(path: Path | None = None) -> Labels:
    """The shipped labels, with `path` (an operator's copy, possibly partial) on top."""
    raw = _read(package_default("report.toml"))
    if path is not None:
        raw = _merge(raw, _read(path), f"{path}: ")
    return Labels(raw)
