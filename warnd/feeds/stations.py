"""Telemetry stations: the places each guards and its thresholds (stations.toml, read and
checked by warnd.config.stations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from warnd.core.domain import Colour
from warnd.core.thresholds import Thresholds, TLevel


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    villages: tuple[str, ...]  # administrative codes of the places it guards
    area_desc: str
    thresholds: Thresholds
    colours: Mapping[TLevel, Colour]
    expires: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class Stations:
    by_id: Mapping[str, Station] = field(default_factory=dict)

    def get(self, sid: str) -> Station | None:
        return self.by_id.get(sid)
