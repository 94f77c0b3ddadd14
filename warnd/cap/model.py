"""Plain, immutable values for a parsed CAP message. Nothing here does I/O or validation:
warnd.cap.parser only builds these from a document it has already checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warnd.core.domain import AlertStatus, MsgType

# (valueName, value) as it appears in <eventCode>, <parameter> and <geocode>.
NamedValue = tuple[str, str]
# (lat, lon) in WGS84 degrees, in CAP's own order (latitude first).
LatLon = tuple[float, float]


@dataclass(frozen=True)
class CapArea:
    area_desc: str
    # Each ring is closed (first == last) and has at least 4 points.
    polygons: tuple[tuple[LatLon, ...], ...] = ()
    # (lat, lon, radius_km); a radius of 0 is a point.
    circles: tuple[tuple[float, float, float], ...] = ()
    geocodes: tuple[NamedValue, ...] = ()


@dataclass(frozen=True)
class CapInfo:
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    language: str = "en-US"  # the CAP default when <language> is absent
    event_codes: tuple[NamedValue, ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    parameters: tuple[NamedValue, ...] = ()
    areas: tuple[CapArea, ...] = ()

    def parameter(self, *names: str) -> str | None:
        """First parameter value whose valueName matches one of `names` (case-insensitive)."""
        wanted = {n.casefold() for n in names}
        for name, value in self.parameters:
            if name.casefold() in wanted:
                return value
        return None


@dataclass(frozen=True)
class CapMessage:
    identifier: str
    sender: str
    sent: datetime  # always timezone-aware
    status: AlertStatus
    msg_type: MsgType
    scope: str
    # (sender, identifier, sent) of each earlier message an Update/Cancel refers to.
    references: tuple[tuple[str, str, datetime], ...] = ()
    note: str | None = None
    infos: tuple[CapInfo, ...] = ()
    version: str = "1.2"  # "1.2" or "1.1", from the root namespace
    # "cap" (OASIS CAP 1.2/1.1) or "gbt35965" (GB/T 35965.1-2018, the national platform's format).
    format: str = "cap"
    # GB/T <code><method>: (method name as sent, e.g. "SMS", "SPEAKER", the text for that channel).
    channel_texts: tuple[NamedValue, ...] = ()

    @property
    def key(self) -> tuple[str, str, datetime]:
        """The triple other messages use to reference this one."""
        return (self.sender, self.identifier, self.sent)
