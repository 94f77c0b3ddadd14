"""Telemetry thresholds: pure functions, no I/O.

A station has thresholds at two levels — 准备转移 (PREPARE → 631 step "warning") and
立即转移 (EVACUATE → step "imminent") — on rainfall accumulated over 1 h / 3 h / 6 h
windows and on water level. `decide` turns the station's status and the measures at a
new reading into the new status and, at most, one warning to raise:

- a level is *entered* when any measure reaches its threshold;
- hysteresis: a level is *left* only when every measure falls below `clear_ratio` ×
  its threshold, so a reading hovering at the threshold does not flap;
- hold-off: after a warning at level L, re-entering L (or a lower level) within
  `hold_off` raises nothing — it is still the same storm; a rise to a *higher* level
  is never held (prepare → evacuate goes out at once);
- a reading not newer than the newest evaluated one (late, out of order, duplicate), older
  than `max_age` by the clock, or from the future beyond `max_skew`, is never evaluated:
  it cannot raise a stale warning. (It is still stored, and counts in the rainfall
  windows of later fresh readings.)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

RAIN_WINDOWS = (1, 3, 6)  # hours


class TLevel(enum.IntEnum):
    NONE = 0
    PREPARE = 1  # 准备转移
    EVACUATE = 2  # 立即转移

    @property
    def zh(self) -> str:
        return {0: "正常", 1: "准备转移", 2: "立即转移"}[self.value]


@dataclass(frozen=True)
class Pair:
    """Threshold values of one measure: (准备转移, 立即转移). Either may be None (unused)."""

    prepare: float | None = None
    evacuate: float | None = None

    def level(self, value: float | None, scale: float = 1.0) -> TLevel:
        if value is None:
            return TLevel.NONE
        if self.evacuate is not None and value >= self.evacuate * scale:
            return TLevel.EVACUATE
        if self.prepare is not None and value >= self.prepare * scale:
            return TLevel.PREPARE
        return TLevel.NONE


@dataclass(frozen=True)
class Thresholds:
    rain: Mapping[int, Pair] = field(default_factory=dict)  # window hours → thresholds (mm)
    water_level: Pair | None = None  # metres
    clear_ratio: float = 0.8
    hold_off: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(minutes=30)
    max_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Measures:
    rain: Mapping[int, float] = field(default_factory=dict)  # window hours → mm
    water_level: float | None = None


@dataclass(frozen=True)
class Status:
    level: TLevel = TLevel.NONE
    evaluated_at: datetime | None = None  # time of the newest reading evaluated
    raised_level: TLevel = TLevel.NONE  # level of the last warning raised
    raised_at: datetime | None = None  # reading time of the last warning raised


@dataclass(frozen=True)
class Decision:
    status: Status
    raise_level: TLevel | None = None  # a warning to raise now
    cleared: bool = False  # fell back below every threshold (no warning is lifted by this)
    reason: str = ""  # raise | held | rise_held | steady | clear | late | stale | future
    cause: str = ""  # which measure decided the level, e.g. "rain_1h"


def rain_totals(readings: Iterable[tuple[datetime, float]], as_of: datetime,
                windows: Iterable[int] = RAIN_WINDOWS) -> dict[int, float]:
    """Rainfall in mm over each window ending at `as_of`: the sum of the increments whose
    time is in (as_of − window, as_of]. Later readings are not counted."""
    rs = [(t, v) for t, v in readings if t <= as_of and v > 0]
    return {w: round(sum(v for t, v in rs if t > as_of - timedelta(hours=w)), 3) for w in windows}


def level_of(measures: Measures, th: Thresholds, scale: float = 1.0) -> tuple[TLevel, str]:
    """The highest level any measure reaches (thresholds multiplied by `scale`), and why."""
    best, cause = TLevel.NONE, ""
    for w, pair in sorted(th.rain.items()):
        lv = pair.level(measures.rain.get(w), scale)
        if lv > best:
            best, cause = lv, f"rain_{w}h"
    if th.water_level is not None:
        lv = th.water_level.level(measures.water_level, scale)
        if lv > best:
            best, cause = lv, "water_level"
    return best, cause


def decide(status: Status, measures: Measures, at: datetime, now: datetime, th: Thresholds) -> Decision:
    if status.evaluated_at is not None and at <= status.evaluated_at:
        return Decision(status, reason="late")
    if at < now - th.max_age:
        return Decision(status, reason="stale")
    if at > now + th.max_skew:
        return Decision(status, reason="future")
    crossed, cause = level_of(measures, th)
    band, _ = level_of(measures, th, th.clear_ratio)
    if crossed > status.level:
        new_level = crossed
    else:
        # Hysteresis: stay at the current level while the measures are within the band.
        new_level = max(crossed, min(status.level, band))
    st = replace(status, level=new_level, evaluated_at=at)
    if new_level > status.level:
        held = (status.raised_at is not None and at < status.raised_at + th.hold_off
                and new_level <= status.raised_level)
        if held:
            return Decision(st, reason="held", cause=cause)
        return Decision(replace(st, raised_level=new_level, raised_at=at), raise_level=new_level,
                        reason="raise", cause=cause)
    if new_level == TLevel.NONE and status.level > TLevel.NONE:
        return Decision(st, cleared=True, reason="clear")
    return Decision(st, reason="steady", cause=cause if new_level else "")
