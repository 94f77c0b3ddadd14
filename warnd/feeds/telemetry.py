"""Rain-gauge and water-level telemetry → automatic 山洪 warnings.

Readings arrive as JSON over HTTP (`POST /api/v1/feeds/{source}/telemetry`) or MQTT
(topic `warnd/telemetry/<station>`), format in docs/feeds.md:

    {"station": "YL001", "time": "2026-07-01T10:00:00+08:00", "rain_mm": 12.5, "level_m": 3.2}

`rain_mm` is the rainfall since the station's previous report (an increment, as tipping-
bucket gauges report it); `level_m` is the water level in metres at `time`. A message may
be one object or a list of them.

Each reading is stored (deduplicated by station, metric and time), the station's measures
are computed as of the reading's time, and warnd.core.thresholds.decide says whether a
warning is raised. A warning is an ordinary CAP document (source "telemetry:<station>",
hazard flash_flood, step warning for 准备转移 / imminent for 立即转移, area = the villages
the station guards) submitted through the normal ingest path. Its identifier is derived
from the station, level and reading time, so the same reading processed twice (a
redelivered MQTT message, two instances) is one warning.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from channels.mqtt import shared_topic
from warnd.clock import Clock
from warnd.config import County
from warnd.core.domain import AlertState, Step
from warnd.core.thresholds import (
    Decision,
    Measures,
    Pair,
    Status,
    TLevel,
    decide,
    rain_totals,
)
from warnd.db.engine import Database
from warnd.db.models import Alert, StationState, TelemetryReading
from warnd.engine.ingest import IngestError, Ingestor, IngestResult
from warnd.engine.module import ModuleBase
from warnd.feeds.sources import Source
from warnd.feeds.stations import Station, Stations

log = structlog.get_logger("warnd.telemetry")

STEP_OF = {TLevel.PREPARE: Step.WARNING, TLevel.EVACUATE: Step.IMMINENT}
METRICS = ("rain_mm", "level_m")


class TelemetryError(ValueError):
    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail, self.field = detail, field


# -- readings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    station: str
    at: datetime
    rain_mm: float | None = None
    level_m: float | None = None


def parse_readings(payload: Any, topic_station: str | None = None) -> list[Reading]:
    """Validate the JSON format (one object or a list). Raises TelemetryError."""
    items = payload if isinstance(payload, list) else [payload]
    if not items or len(items) > 10000:
        raise TelemetryError("expected a reading object or a non-empty list of them", "$")
    out: list[Reading] = []
    for i, obj in enumerate(items):
        where = f"[{i}]" if isinstance(payload, list) else ""
        if not isinstance(obj, dict):
            raise TelemetryError("a reading must be a JSON object", where or "$")
        sid = obj.get("station", topic_station)
        if not isinstance(sid, str) or not sid:
            raise TelemetryError("station is required", f"{where}station")
        if topic_station is not None and sid != topic_station:
            raise TelemetryError(f"station {sid!r} does not match the topic's {topic_station!r}", f"{where}station")
        t = obj.get("time")
        try:
            at = datetime.fromisoformat(str(t).replace("Z", "+00:00")) if isinstance(t, str) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise TelemetryError("time must be an ISO 8601 time with a zone", f"{where}time")
        values: dict[str, float | None] = {}
        for m in METRICS:
            v = obj.get(m)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v != v):
                raise TelemetryError(f"{m} must be a number", f"{where}{m}")
            values[m] = None if v is None else float(v)
        if values["rain_mm"] is None and values["level_m"] is None:
            raise TelemetryError("a reading needs rain_mm or level_m", where or "$")
        if values["rain_mm"] is not None and not 0 <= values["rain_mm"] <= 500:
            raise TelemetryError("rain_mm must be between 0 and 500", f"{where}rain_mm")
        out.append(Reading(sid, at.astimezone(UTC), values["rain_mm"], values["level_m"]))
    return out


# -- the CAP document a crossing raises -----------------------------------------------------


def telemetry_sender(county: County) -> str:
    return f"warnd-telemetry-{county.code}"


def _t(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat()


def describe(measures: Measures, station: Station, level: TLevel, cause: str) -> str:
    th = station.thresholds
    if cause.startswith("rain_"):
        w = int(cause[5:-1])
        pair = th.rain[w]
        limit = pair.evacuate if level == TLevel.EVACUATE else pair.prepare
        return f"{station.name}{w}小时降雨量{measures.rain.get(w, 0):.1f}毫米，超过{level.zh}阈值{limit:g}毫米"
    pair = th.water_level or Pair()
    limit = pair.evacuate if level == TLevel.EVACUATE else pair.prepare
    return f"{station.name}水位{measures.water_level or 0:.2f}米，超过{level.zh}水位{limit:g}米"


def build_cap(station: Station, level: TLevel, reading_at: datetime, sent: datetime, measures: Measures,
              cause: str, county: County, previous: tuple[str, str, datetime] | None = None) -> tuple[bytes, str]:
    """(CAP 1.2 XML, identifier) of the warning a crossing raises."""
    assert level in STEP_OF
    identifier = f"TM-{station.id}-{reading_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{level.name.lower()}"
    step = STEP_OF[level]
    colour = station.colours[level]
    what = describe(measures, station, level, cause)
    names = station.area_desc
    instruction = (f"请立即组织{names}危险区群众转移，鸣锣吹哨、敲门入户，确保不漏一户一人。"
                   if level == TLevel.EVACUATE else
                   f"请{names}做好危险区群众转移准备，转移责任人立即到岗，密切关注雨情水情。")
    refs = f"<references>{escape(previous[0])},{escape(previous[1])},{_t(previous[2])}</references>" if previous else ""
    geo = "".join(f"<geocode><valueName>行政区划代码</valueName><value>{c}</value></geocode>" for c in station.villages)
    severity = {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}[colour.value]
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{escape(identifier)}</identifier>
  <sender>{telemetry_sender(county)}</sender>
  <sent>{_t(sent)}</sent>
  <status>Actual</status>
  <msgType>{"Update" if previous else "Alert"}</msgType>
  <scope>Public</scope>
  {refs}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <category>Geo</category>
    <event>山洪灾害{level.zh}预警</event>
    <urgency>{"Immediate" if level == TLevel.EVACUATE else "Expected"}</urgency>
    <severity>{severity}</severity>
    <certainty>Observed</certainty>
    <eventCode><valueName>warnd</valueName><value>flash_flood</value></eventCode>
    <effective>{_t(sent)}</effective>
    <expires>{_t(reading_at + station.expires)}</expires>
    <senderName>{escape(county.sender_name)}</senderName>
    <headline>{escape(what)}</headline>
    <description>{escape(what)}（{_t(reading_at)}自动监测）。</description>
    <instruction>{escape(instruction)}</instruction>
    <parameter><valueName>631_step</valueName><value>{step.value}</value></parameter>
    <parameter><valueName>colour</valueName><value>{colour.value}</value></parameter>
    <parameter><valueName>station</valueName><value>{escape(station.id)}</value></parameter>
    <area><areaDesc>{escape(names)}</areaDesc>{geo}</area>
  </info>
</alert>"""
    return xml.encode("utf-8"), identifier


# -- the service ------------------------------------------------------------------------------


@dataclass
class ReadingOutcome:
    station: str
    at: datetime
    stored: bool  # False: duplicate of a stored reading
    reason: str  # thresholds.Decision.reason, or unknown_station / duplicate
    level: int = 0
    raised: TLevel | None = None
    alert_id: int | None = None
    measures: Measures | None = None

    def as_json(self) -> dict[str, Any]:
        return {"station": self.station, "time": self.at.isoformat(), "stored": self.stored,
                "reason": self.reason, "level": TLevel(self.level).zh,
                "raised": self.raised.zh if self.raised else None, "alert_id": self.alert_id}


Recorder = Callable[..., Awaitable[None]]


class TelemetryService:
    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor, stations: Stations, county: County,
                 record: Recorder, on_source: Callable[[str, str | None], Awaitable[None]] | None = None):
        self.db, self.clock, self.ingestor, self.stations, self.county = db, clock, ingestor, stations, county
        self.record = record
        self.on_source = on_source  # source health (last success / last error) per message
        self._locks: dict[str, asyncio.Lock] = {}

    async def submit_json(self, body: bytes | str, source: Source | None = None,
                          topic_station: str | None = None) -> list[ReadingOutcome]:
        try:
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):  # not JSON, or nested too deep to read
                raise TelemetryError("body is not JSON", "$") from None
            readings = parse_readings(payload, topic_station)
        except TelemetryError as e:
            if source is not None and self.on_source is not None:
                await self.on_source(source.name, e.detail)
            raise
        if source is not None and source.stations:
            for r in readings:
                if r.station not in source.stations:
                    await self.record("feed_rejected", source=source.name, reason="station not allowed",
                                      station=r.station)
                    raise TelemetryError(f"station {r.station!r} is not allowed for source {source.name!r}",
                                         "station")
        out = [await self.submit(r) for r in readings]
        if source is not None and self.on_source is not None:
            await self.on_source(source.name, None)
        return out

    async def submit(self, reading: Reading) -> ReadingOutcome:
        """Store one reading, evaluate it, raise a warning if a threshold is crossed."""
        station = self.stations.get(reading.station)
        if station is None:
            await self.record("telemetry_rejected", station=reading.station, reason="unknown station")
            return ReadingOutcome(reading.station, reading.at, False, "unknown_station")
        lock = self._locks.setdefault(station.id, asyncio.Lock())
        async with lock:
            return await self._submit(station, reading)

    async def store(self, reading: Reading) -> bool:
        """Store a reading without evaluating it (a gateway confirms receipt first, then calls
        `evaluate`; if the process dies in between, TelemetryEvaluation picks it up). False: a
        duplicate, or an unknown station."""
        if self.stations.get(reading.station) is None:
            return False
        return await self._store(reading, self.clock.now())

    async def evaluate(self, reading: Reading, stored: bool) -> ReadingOutcome:
        """Evaluate a reading `store` has dealt with."""
        station = self.stations.get(reading.station)
        if station is None:
            return ReadingOutcome(reading.station, reading.at, False, "unknown_station")
        async with self._locks.setdefault(station.id, asyncio.Lock()):
            return await self._evaluate(station, reading, stored)

    async def _store(self, r: Reading, now: datetime) -> bool:
        stored = False
        for metric in METRICS:
            value = getattr(r, metric)
            if value is None:
                continue
            try:
                async with self.db.session() as s, s.begin():
                    s.add(TelemetryReading(station=r.station, metric=metric, at=r.at, value=value, received_at=now))
                stored = True
            except IntegrityError:
                pass  # same station, metric and time: a redelivery
        return stored

    async def counter(self, station: str, metric: str, at: datetime, value: float) -> tuple[float | None, bool]:
        """Store a station's counter reading (e.g. SL 651 PT, cumulative rain) at `at`; return
        (the last value stored before it or None, late): `late` when a value for a later time
        was already stored, whose difference spans this one (nothing to count). A redelivered
        value is stored once; the answer is the same."""
        now = self.clock.now()
        try:
            async with self.db.session() as s, s.begin():
                s.add(TelemetryReading(station=station, metric=metric, at=at, value=value, received_at=now))
        except IntegrityError:
            pass
        async with self.db.read() as s:
            later = (await s.exec(select(TelemetryReading.received_at).where(
                TelemetryReading.station == station, TelemetryReading.metric == metric,
                col(TelemetryReading.at) > at).limit(1))).first()
            if later is not None and later <= now:
                return None, True
            previous = (await s.exec(select(TelemetryReading.value).where(
                TelemetryReading.station == station, TelemetryReading.metric == metric,
                col(TelemetryReading.at) < at).order_by(col(TelemetryReading.at).desc()).limit(1))).first()
            return previous, False

    async def measures_at(self, station: Station, at: datetime) -> Measures:
        th = station.thresholds
        longest = max(th.rain, default=0)
        async with self.db.session() as s:
            rain = (await s.exec(select(TelemetryReading.at, TelemetryReading.value).where(
                TelemetryReading.station == station.id, TelemetryReading.metric == "rain_mm",
                col(TelemetryReading.at) > at - timedelta(hours=longest), col(TelemetryReading.at) <= at))).all()
            level = (await s.exec(select(TelemetryReading.value).where(
                TelemetryReading.station == station.id, TelemetryReading.metric == "level_m",
                col(TelemetryReading.at) > at - th.max_age, col(TelemetryReading.at) <= at).order_by(
                col(TelemetryReading.at).desc()).limit(1))).first()
        return Measures(rain_totals(rain, at, th.rain.keys()), level)

    async def _state(self, station: Station) -> tuple[StationState, Status]:
        async with self.db.session() as s:
            row = await s.get(StationState, station.id)
            # Recovery: a warning raised but whose state was not saved (crash in between).
            latest = (await s.exec(select(Alert).where(Alert.source == f"telemetry:{station.id}").order_by(
                col(Alert.sent).desc()).limit(1))).first()
        row = row or StationState(station=station.id)
        if latest is not None and (row.alert_sent is None or latest.sent > row.alert_sent):
            lv = TLevel.EVACUATE if latest.step == Step.IMMINENT else TLevel.PREPARE
            row.alert_sender, row.alert_identifier, row.alert_sent = latest.sender, latest.identifier, latest.sent
            row.raised_level, row.raised_at, row.level = lv, latest.sent, max(row.level, lv)
        st = Status(TLevel(row.level), row.evaluated_at, TLevel(row.raised_level), row.raised_at)
        return row, st

    async def _submit(self, station: Station, r: Reading) -> ReadingOutcome:
        stored = await self._store(r, self.clock.now())
        return await self._evaluate(station, r, stored)

    async def evaluate_pending(self, limit: int = 100) -> int:
        """Evaluate readings that were stored but never evaluated (the process died in between,
        or another instance stored them), oldest first per station. Returns how many."""
        done = 0
        for station in self.stations.by_id.values():
            lock = self._locks.setdefault(station.id, asyncio.Lock())
            async with lock:
                now = self.clock.now()
                th = station.thresholds
                async with self.db.read() as s:
                    st = await s.get(StationState, station.id)
                    # Only what the inline path would have evaluated: not stale now, and not
                    # dated in the future when it arrived (both were reported as ignored then).
                    q = select(TelemetryReading).where(
                        TelemetryReading.station == station.id, col(TelemetryReading.metric).in_(METRICS),
                        col(TelemetryReading.at) >= now - th.max_age)
                    if st is not None and st.evaluated_at is not None:
                        q = q.where(col(TelemetryReading.at) > st.evaluated_at)
                    rows = [r for r in (await s.exec(q.order_by(col(TelemetryReading.at)).limit(limit))).all()
                            if r.at <= r.received_at + th.max_skew]
                by_time: dict[datetime, dict[str, float]] = {}
                for row in rows:
                    by_time.setdefault(row.at, {})[row.metric] = row.value
                for at, values in sorted(by_time.items()):
                    await self._evaluate(station, Reading(station.id, at, values.get("rain_mm"), values.get("level_m")),
                                         stored=True)
                    done += 1
        return done

    async def _evaluate(self, station: Station, r: Reading, stored: bool) -> ReadingOutcome:
        now = self.clock.now()
        row, status = await self._state(station)
        if not stored and status.evaluated_at is not None and r.at <= status.evaluated_at:
            return ReadingOutcome(station.id, r.at, False, "duplicate")
        # A redelivered reading that was stored but never evaluated (a crash in between) is
        # evaluated now; the warning identifier is derived from it, so this cannot repeat one.
        measures = await self.measures_at(station, r.at)
        d: Decision = decide(status, measures, r.at, now, station.thresholds)
        out = ReadingOutcome(station.id, r.at, stored, d.reason, int(d.status.level), measures=measures)
        if d.reason in ("late", "stale", "future"):
            if d.reason != "late":
                await self.record("telemetry_ignored", station=station.id, reason=d.reason, time=r.at.isoformat())
            return out
        if d.raise_level is not None:
            previous = None
            if row.alert_identifier and row.alert_sender and row.alert_sent and await self._active(row):
                previous = (row.alert_sender, row.alert_identifier, row.alert_sent)
            xml, identifier = build_cap(station, d.raise_level, r.at, now, measures, d.cause, self.county, previous)
            result = await self._ingest(xml, station)
            if result is not None:
                out.raised, out.alert_id = d.raise_level, result.alert_id
                async with self.db.session() as s:
                    sent = (await s.exec(select(Alert.sent).where(Alert.id == result.alert_id))).one()
                row.alert_sender, row.alert_identifier, row.alert_sent = telemetry_sender(self.county), identifier, sent
        if d.cleared:
            await self.record("telemetry_cleared", station=station.id, time=r.at.isoformat())
        row.level, row.evaluated_at = int(d.status.level), d.status.evaluated_at
        row.raised_level, row.raised_at = int(d.status.raised_level), d.status.raised_at
        async with self.db.session() as s, s.begin():
            await s.merge(row)
        return out

    async def _active(self, row: StationState) -> bool:
        async with self.db.session() as s:
            state = (await s.exec(select(Alert.state).where(
                Alert.sender == row.alert_sender, Alert.identifier == row.alert_identifier))).first()
        return state == AlertState.ACTIVE

    async def _ingest(self, xml: bytes, station: Station) -> IngestResult | None:
        try:
            return await self.ingestor.submit_cap(xml, source=f"telemetry:{station.id}")
        except IngestError as e:
            # e.g. none of the villages is in the roster: the duty room must know.
            await self.record("telemetry_warning_refused", station=station.id, status=e.status, detail=e.detail)
            log.error("telemetry warning refused", station=station.id, detail=e.detail)
            return None

    async def health(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = {r.station: r for r in (await s.exec(select(StationState))).all()}
        now = self.clock.now()
        out = []
        for sid in sorted(self.stations.by_id):
            r = rows.get(sid)
            out.append({"station": sid, "name": self.stations.by_id[sid].name,
                        "level": TLevel(r.level).zh if r else TLevel.NONE.zh,
                        "last_reading_at": r.evaluated_at.isoformat() if r and r.evaluated_at else None,
                        "seconds_since_reading": (now - r.evaluated_at).total_seconds()
                        if r and r.evaluated_at else None,
                        "last_warning": r.alert_identifier if r else None})
        return out

    async def run_mqtt(self, source: Source) -> None:
        """Subscribe to the source's topic and feed every message in; reconnect forever."""
        import aiomqtt

        u = urlsplit(source.mqtt_url)
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(hostname=u.hostname or "127.0.0.1", port=u.port or 1883,
                                          username=u.username, password=u.password,
                                          identifier=f"warnd-telemetry-{source.name}-{uuid.uuid4().hex[:8]}") as client:
                    # Shared: with several instances, each reading reaches one of them.
                    await client.subscribe(shared_topic(f"warnd-telemetry-{source.name}", source.topic), qos=1)
                    log.info("telemetry subscribed", source=source.name, topic=source.topic)
                    delay = 1.0
                    async for message in client.messages:
                        await self._on_mqtt(source, str(message.topic), bytes(message.payload))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("telemetry MQTT connection lost", source=source.name, error=str(e), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _on_mqtt(self, source: Source, topic: str, payload: bytes) -> list[ReadingOutcome]:
        station = topic.rsplit("/", 1)[-1] if "+" in source.topic or "#" in source.topic else None
        try:
            return await self.submit_json(payload, source, station)
        except TelemetryError as e:
            await self.record("telemetry_rejected", source=source.name, topic=topic, reason=e.detail)
            return []


async def feed_readings(telemetry: TelemetryService, readings: Iterable[Reading]) -> list[ReadingOutcome]:
    """Feed readings into the handler in order (demo and tests: a simulated rain gauge)."""
    return [await telemetry.submit(r) for r in readings]


def rain_series(station: str, start: datetime, mm: Iterable[float],
                every: timedelta = timedelta(minutes=10)) -> list[Reading]:
    """Readings of a simulated rain gauge: `mm[i]` fell in the interval ending at
    start + i × every. E.g. rain_series("YL001", now, [5, 12, 18, 25]) for a storm building."""
    return [Reading(station, start + i * every, rain_mm=float(v)) for i, v in enumerate(mm)]


class TelemetryEvaluation(ModuleBase):
    """Evaluates stored readings nobody evaluated yet: a crash between storing a reading and
    evaluating it, or a reading stored by another instance, still raises its warning."""

    name = "telemetry"
    poll_seconds = 30.0

    def __init__(self, telemetry: TelemetryService):
        super().__init__()
        self.telemetry = telemetry

    async def step(self) -> bool:
        if not self.telemetry.stations.by_id:
            return False
        limit = 100
        return await self.telemetry.evaluate_pending(limit) >= limit  # a full batch: more may wait
