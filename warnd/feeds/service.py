"""The automated feeds: source trust and mapping on the ingest path (`SourceTrust.prepare`,
handed to the Ingestor by the composition root), CAP push, CAP polling and telemetry
evaluation (engine modules), telemetry over MQTT, and the health view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlmodel import select

from warnd.cap.classify import Vocabulary
from warnd.cap.model import CapMessage
from warnd.clock import Clock
from warnd.config import County, load_sources, load_stations, load_wording
from warnd.db.engine import Database
from warnd.db.models import FeedState
from warnd.engine import events
from warnd.engine.ingest import IngestError, Ingestor, IngestResult
from warnd.feeds.mapping import LiftWithoutReferences, Wording, prepare
from warnd.feeds.poller import FeedPolls, Poller, health_row
from warnd.feeds.sl651 import Sl651Server, StationGateway
from warnd.feeds.sources import Source, Sources
from warnd.feeds.stations import Stations
from warnd.feeds.telemetry import TelemetryEvaluation, TelemetryService

log = structlog.get_logger("warnd.feeds")


@dataclass
class PushRejected(Exception):
    status: int
    title: str
    detail: str


class FeedLog:
    """Events about the feeds (refusals, health) and each source's health row (feed_state)."""

    def __init__(self, db: Database, clock: Clock):
        self.db, self.clock = db, clock

    async def record(self, kind: str, **data: Any) -> None:
        async with self.db.session() as s, s.begin():
            events.record(s, self.clock.now(), kind, **data)
        log.warning(kind.replace("_", " "), **data)

    async def note_error(self, name: str, error: str) -> None:
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            st.last_error, st.last_error_at = error[:1000], self.clock.now()
            await s.merge(st)

    async def note_telemetry(self, name: str, error: str | None) -> None:
        if error is not None:
            await self.note_error(name, error)
            return
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            st.last_success_at = self.clock.now()
            await s.merge(st)

    async def note_success(self, name: str, result: IngestResult) -> None:
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            now = self.clock.now()
            st.last_success_at = now
            if result.created:
                st.entries_ingested += 1
                st.last_entry_at = now
            await s.merge(st)


@dataclass(frozen=True)
class FeedConfig:
    sources: Sources
    stations: Stations
    wording: Wording
    sl651_tcp: str = ""  # SL 651 gateway listeners ("host:port", "" = off)
    sl651_udp: str = ""
    sl651_idle_seconds: float = 300.0

    @classmethod
    def load(cls, *, sources_path: str = "", stations_path: str = "", vocabulary_path: str = "",
             known_hazards: tuple[str, ...] | None = None, sl651_tcp: str = "", sl651_udp: str = "",
             sl651_idle_seconds: float = 300.0) -> FeedConfig:
        sources = load_sources(Path(sources_path), known_hazards=known_hazards) if sources_path else Sources({})
        stations = load_stations(Path(stations_path)) if stations_path else Stations({})
        wording = load_wording(Path(vocabulary_path) if vocabulary_path else None)
        return cls(sources, stations, wording, sl651_tcp, sl651_udp, sl651_idle_seconds)


class SourceTrust:
    """The ingest hook (`Ingestor(prepare=...)`): which source may send what, and the
    source's mapping of its own codes. Runs after parsing, before anything is stored."""

    def __init__(self, sources: Sources, vocab: Vocabulary, wording: Wording, feed_log: FeedLog, clock: Clock):
        self.sources, self.vocab, self.wording, self.log, self.clock = sources, vocab, wording, feed_log, clock

    async def prepare(self, msg: CapMessage, source: str) -> CapMessage:
        src: Source | None = None
        if source.startswith("feed:"):
            src = self.sources.for_ingest_name(source)
            if src is None or not src.enabled:
                await self.log.record("feed_rejected", source=source, reason="unknown source",
                                      sender=msg.sender, identifier=msg.identifier)
                raise IngestError(403, "Unknown source", f"no enabled feed source {source[5:]!r}", "source")
            if not src.sender_allowed(msg.sender):
                await self.log.record("feed_rejected", source=src.name, reason="untrusted sender",
                                      sender=msg.sender, identifier=msg.identifier)
                await self.log.note_error(src.name, f"untrusted sender {msg.sender!r}")
                raise IngestError(403, "Untrusted sender",
                                  f"sender {msg.sender!r} is not on the allow-list of source {src.name!r}",
                                  "alert.sender")
        try:
            return prepare(msg, src, self.vocab, self.wording)
        except LiftWithoutReferences as e:
            await self.log.record("feed_rejected", source=source, reason="lifting without references",
                                  sender=msg.sender, identifier=msg.identifier)
            raise IngestError(422, "Lifting without references", str(e), "alert.references") from None


class FeedService:
    """CAP push, the poll and telemetry modules, MQTT telemetry subscriptions, health."""

    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor, config: FeedConfig, county: County,
                 feed_log: FeedLog):
        self.db, self.clock, self.ingestor, self.log = db, clock, ingestor, feed_log
        self.sources, self.stations = config.sources, config.stations
        self.poller = Poller(db, clock, ingestor)
        self.polls = FeedPolls(self.poller, config.sources)
        self.telemetry = TelemetryService(db, clock, ingestor, config.stations, county, feed_log.record,
                                          on_source=feed_log.note_telemetry)
        self.evaluation = TelemetryEvaluation(self.telemetry)
        self.gateway = StationGateway(self.telemetry, config.stations, clock, feed_log.record)
        self.sl651 = Sl651Server(self.gateway, tcp=config.sl651_tcp, udp=config.sl651_udp,
                                 idle_seconds=config.sl651_idle_seconds) \
            if config.sl651_tcp or config.sl651_udp else None
        self._tasks: list[asyncio.Task[None]] = []

    def modules(self) -> list[Any]:
        """The engine modules the feeds contribute (the composition root runs them)."""
        return [self.polls, self.evaluation]

    async def record(self, kind: str, **data: Any) -> None:
        await self.log.record(kind, **data)

    # -- push ----------------------------------------------------------------------------

    async def push(self, name: str, body: bytes, authorization: str | None,
                   signature: str | None) -> IngestResult:
        """POST /api/v1/feeds/{name}/cap. Raises PushRejected / IngestError."""
        src = self.sources.get(name)
        if src is None or src.kind != "cap_push" or not src.enabled:
            await self.log.record("feed_rejected", source=name, reason="no such push source")
            raise PushRejected(404, "Unknown source", f"no enabled CAP push source {name!r}")
        if not src.check_auth(authorization, signature, body):
            await self.log.record("feed_rejected", source=name, reason="bad credentials")
            await self.log.note_error(name, "push with bad credentials")
            raise PushRejected(401, "Unauthorized",
                               "this source needs its bearer token or an X-Warnd-Signature HMAC")
        result = await self.ingestor.submit_cap(body, source=src.ingest_name)
        await self.log.note_success(name, result)
        return result

    # -- health --------------------------------------------------------------------------

    async def health(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        async with self.db.read() as s:
            states = {st.source: st for st in (await s.exec(select(FeedState))).all()}
        rows = [health_row(src, states.get(name), now) for name, src in sorted(self.sources.by_name.items())]
        if self.telemetry.stations.by_id:
            rows.append({"name": "telemetry", "kind": "telemetry_stations",
                         "stations": await self.telemetry.health()})
        if self.sl651 is not None or self.gateway.by_address:
            rows.append({"name": "sl651", "kind": "sl651_gateway",
                         "listening": {"tcp": self.sl651.tcp_port if self.sl651 else None,
                                       "udp": self.sl651.udp_port if self.sl651 else None},
                         **self.gateway.health_rows()})
        return rows

    # -- lifecycle (the MQTT telemetry subscriptions; modules run in the engine) ------------

    async def start(self) -> None:
        if self.sl651 is not None:
            await self.sl651.start()
        for src in self.sources.of_kind("telemetry"):
            if src.mqtt_url:
                self._tasks.append(asyncio.create_task(
                    self.telemetry.run_mqtt(src), name=f"mqtt:{src.name}"))
        log.info("feeds started", poll=[s.name for s in self.sources.of_kind("cap_poll")],
                 push=[s.name for s in self.sources.of_kind("cap_push")],
                 stations=len(self.telemetry.stations.by_id))

    async def stop(self) -> None:
        if self.sl651 is not None:
            await self.sl651.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
