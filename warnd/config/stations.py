"""stations.toml → warnd.feeds.stations.Stations: telemetry stations and their thresholds
(format: docs/feeds.md and the example config/stations.toml). [defaults] holds values every
station takes unless it sets its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from warnd.config.errors import StationsError
from warnd.config.validation import Number, Strict, enum_check, problem, read_toml, validate
from warnd.core.domain import Colour
from warnd.core.thresholds import RAIN_WINDOWS, Pair, Thresholds, TLevel
from warnd.feeds.stations import Station, Stations

ColourT = Annotated[Colour, BeforeValidator(enum_check(Colour))]


def _pair(v: Any) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in v)
            and v[0] < v[1]):
        raise problem("must be [准备转移, 立即转移] with 0 < prepare < evacuate")
    return float(v[0]), float(v[1])


def _villages(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(c, str) and c.isdigit() for c in v):
        raise problem("must list the administrative codes it guards")
    return tuple(v)


def _ratio(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
        raise problem("must be in (0, 1]")
    return float(v)


Threshold = Annotated[tuple[float, float], BeforeValidator(_pair)]


def _hex_digits(n: int) -> Any:
    def check(v: Any) -> str:
        if not isinstance(v, str) or len(v) != n or any(c not in "0123456789abcdefABCDEF" for c in v):
            raise problem(f"must be {n} hexadecimal digits")
        return v.upper()
    return check


class ColoursSpec(Strict):
    prepare: ColourT = Colour.ORANGE  # 准备转移
    evacuate: ColourT = Colour.RED  # 立即转移


class StationSpec(Strict):
    """A station's keys; in [defaults] every one is optional."""

    name: str | None = None
    area_desc: str | None = None  # default: the name
    villages: Annotated[tuple[str, ...], BeforeValidator(_villages)] | None = None
    rain_1h: Threshold | None = None
    rain_3h: Threshold | None = None
    rain_6h: Threshold | None = None
    level_m: Threshold | None = None
    clear_ratio: Annotated[float, BeforeValidator(_ratio)] = 0.8
    hold_off_minutes: Number = 60
    max_age_minutes: Number = 30
    max_skew_minutes: Number = 5
    expires_hours: Number = 6
    colours: ColoursSpec = ColoursSpec()
    # SL 651-2014: the remote station address it sends (10 digits, e.g. "0010100001") and its password.
    sl651_address: Annotated[str, BeforeValidator(_hex_digits(10))] | None = None
    sl651_password: Annotated[str, BeforeValidator(_hex_digits(4))] | None = None


class StationsSpec(Strict):
    defaults: StationSpec = StationSpec()
    stations: dict[str, StationSpec] = Field(default_factory=dict)

    def merged(self, sid: str) -> StationSpec:
        spec = self.stations[sid]
        return self.defaults.model_copy(update={k: getattr(spec, k) for k in spec.model_fields_set})

    @model_validator(mode="after")
    def _complete(self) -> StationsSpec:
        for sid in self.stations:
            s = self.merged(sid)
            if s.villages is None:
                raise problem("missing required key", "stations", sid, "villages")
            if not any((s.rain_1h, s.rain_3h, s.rain_6h, s.level_m)):
                raise problem("needs at least one threshold (rain_1h/3h/6h or level_m)", "stations", sid)
        owner: dict[str, str] = {}
        for sid, spec in self.stations.items():
            if spec.sl651_address:
                other = owner.setdefault(spec.sl651_address, sid)
                if other != sid:
                    raise problem(f"SL 651 address already used by station {other}", "stations", sid, "sl651_address")
        return self

    def build(self) -> Stations:
        out: dict[str, Station] = {}
        for sid in self.stations:
            s = self.merged(sid)
            rain = {w: Pair(*p) for w in RAIN_WINDOWS if (p := getattr(s, f"rain_{w}h")) is not None}
            th = Thresholds(
                rain=rain, water_level=Pair(*s.level_m) if s.level_m else None, clear_ratio=s.clear_ratio,
                hold_off=timedelta(minutes=s.hold_off_minutes), max_age=timedelta(minutes=s.max_age_minutes),
                max_skew=timedelta(minutes=s.max_skew_minutes))
            name = s.name or sid
            out[sid] = Station(sid, name, s.villages or (), s.area_desc or name, th,
                               {TLevel.PREPARE: s.colours.prepare, TLevel.EVACUATE: s.colours.evacuate},
                               timedelta(hours=s.expires_hours), sl651_address=self.stations[sid].sl651_address or "",
                               sl651_password=s.sl651_password or "")
        return Stations(out)


def parse_stations(raw: Any, source: str = "<stations>") -> Stations:
    """Stations from a parsed stations.toml."""
    return validate(StationsSpec, raw, source, StationsError).build()


def load_stations(path: Path) -> Stations:
    return parse_stations(read_toml(path, StationsError), str(path))
