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
    sl651_address: str = ""  # SL 651 remote station address (10 hex digits), "" = not an SL 651 station
    sl651_password: str = ""  # its password (4 hex digits); "" = not checked


@dataclass(frozen=True)
class Stations:
    by_id: Mapping[str, Station] = field(default_factory=dict)

    def get(self, sid: str) -> Station | None:
        return self.by_id.get(sid)

    def by_sl651_address(self) -> dict[str, Station]:
        return {s.sl651_address: s for s in self.by_id.values() if s.sl651_address}
