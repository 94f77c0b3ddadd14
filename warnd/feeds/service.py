"""The automated feeds, wired: trust and mapping on the ingest path, CAP push, CAP polling
on APScheduler, telemetry (HTTP and MQTT), expiry of warnings, and the health view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import select

from warnd.cap.classify import Vocabulary
from warnd.cap.model import CapMessage
from warnd.clock import Clock
from warnd.config import County, load_sources, load_stations, load_wording
from warnd.core.domain import MsgType
from warnd.db.engine import Database
from warnd.db.models import FeedState
from warnd.engine import events
from warnd.engine.ingest import IngestError, Ingestor, IngestResult
from warnd.feeds.expiry import ExpiryWorker
from warnd.feeds.mapping import (
    DEFAULT_WORDING,
    LiftWithoutReferences,
    Wording,
    prepare,
)
from warnd.feeds.poller import Poller, health_row
from warnd.feeds.sources import Source, Sources
from warnd.feeds.stations import Stations
from warnd.feeds.telemetry import TelemetryService

log = structlog.get_logger("warnd.feeds")


@dataclass
class PushRejected(Exception):
    status: int
    title: str
    detail: str


class FeedService:
    def __init__(self, db: Database, clock: Clock, ingestor: Ingestor, sources: Sources,
                 vocab: Vocabulary, county: County, wording: Wording = DEFAULT_WORDING,
                 stations: Stations | None = None):
        self.db, self.clock, self.ingestor, self.sources = db, clock, ingestor, sources
        self.vocab, self.wording = vocab, wording
        self.poller = Poller(db, clock, ingestor)
        self.expiry = ExpiryWorker(db, clock, ingestor)
        self.telemetry = TelemetryService(db, clock, ingestor, stations or Stations({}), county, self.record)
        self.telemetry.on_source = self._note_telemetry
        self.scheduler: AsyncIOScheduler | None = None
        self.autopoll = True  # False: jobs are scheduled but paused (tests drive polls directly)
        self._tasks: list[asyncio.Task[None]] = []
        ingestor.prepare = self.prepare

    @classmethod
    def build(cls, *, db: Database, clock: Clock, ingestor: Ingestor, vocab: Vocabulary, county: County,
              sources_path: str = "", stations_path: str = "", vocabulary_path: str = "") -> FeedService:
        sources = load_sources(Path(sources_path), known_hazards=vocab.codes) if sources_path else Sources({})
        stations = load_stations(Path(stations_path)) if stations_path else Stations({})
        wording = load_wording(Path(vocabulary_path) if vocabulary_path else None)
        return cls(db, clock, ingestor, sources, vocab, county, wording, stations)

    # -- ingest hook ---------------------------------------------------------------------

    async def prepare(self, msg: CapMessage, source: str) -> CapMessage:
        """Called by Ingestor.submit_cap after parsing, before anything is stored."""
        src: Source | None = None
        if source.startswith("feed:"):
            src = self.sources.for_ingest_name(source)
            if src is None or not src.enabled:
                await self.record("feed_rejected", source=source, reason="unknown source",
                                  sender=msg.sender, identifier=msg.identifier)
                raise IngestError(403, "Unknown source", f"no enabled feed source {source[5:]!r}", "source")
            if not src.sender_allowed(msg.sender):
                await self.record("feed_rejected", source=src.name, reason="untrusted sender",
                                  sender=msg.sender, identifier=msg.identifier)
                await self._note_error(src.name, f"untrusted sender {msg.sender!r}")
                raise IngestError(403, "Untrusted sender",
                                  f"sender {msg.sender!r} is not on the allow-list of source {src.name!r}",
                                  "alert.sender")
            now = self.clock.now()
            if msg.msg_type in (MsgType.ALERT, MsgType.UPDATE) and msg.infos and all(
                    i.expires is not None and i.expires <= now for i in msg.infos):
                await self.record("feed_rejected", source=src.name, reason="expired",
                                  sender=msg.sender, identifier=msg.identifier)
                raise IngestError(422, "Expired", "every <info> of the message has expired: not disseminated",
                                  "info.expires")
        try:
            return prepare(msg, src, self.vocab, self.wording)
        except LiftWithoutReferences as e:
            await self.record("feed_rejected", source=source, reason="lifting without references",
                              sender=msg.sender, identifier=msg.identifier)
            raise IngestError(422, "Lifting without references", str(e), "alert.references") from None

    async def record(self, kind: str, **data: Any) -> None:
        async with self.db.session() as s, s.begin():
            events.record(s, self.clock.now(), kind, **data)
        log.warning(kind.replace("_", " "), **data)

    async def _note_error(self, name: str, error: str) -> None:
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            st.last_error, st.last_error_at = error[:1000], self.clock.now()
            await s.merge(st)

    async def _note_telemetry(self, name: str, error: str | None) -> None:
        if error is not None:
            await self._note_error(name, error)
            return
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            st.last_success_at = self.clock.now()
            await s.merge(st)

    async def _note_success(self, name: str, result: IngestResult) -> None:
        async with self.db.session() as s, s.begin():
            st = await s.get(FeedState, name) or FeedState(source=name)
            now = self.clock.now()
            st.last_success_at = now
            if result.created:
                st.entries_ingested += 1
                st.last_entry_at = now
            await s.merge(st)

    # -- push ----------------------------------------------------------------------------

    async def push(self, name: str, body: bytes, authorization: str | None,
                   signature: str | None) -> IngestResult:
        """POST /api/v1/feeds/{name}/cap. Raises PushRejected / IngestError."""
        src = self.sources.get(name)
        if src is None or src.kind != "cap_push" or not src.enabled:
            await self.record("feed_rejected", source=name, reason="no such push source")
            raise PushRejected(404, "Unknown source", f"no enabled CAP push source {name!r}")
        if not src.check_auth(authorization, signature, body):
            await self.record("feed_rejected", source=name, reason="bad credentials")
            await self._note_error(name, "push with bad credentials")
            raise PushRejected(401, "Unauthorized",
                               "this source needs its bearer token or an X-Warnd-Signature HMAC")
        result = await self.ingestor.submit_cap(body, source=src.ingest_name)
        await self._note_success(name, result)
        return result

    # -- health --------------------------------------------------------------------------

    async def health(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        async with self.db.session() as s:
            states = {st.source: st for st in (await s.exec(select(FeedState))).all()}
        rows = [health_row(src, states.get(name), now) for name, src in sorted(self.sources.by_name.items())]
        if self.telemetry.stations.by_id:
            rows.append({"name": "telemetry", "kind": "telemetry_stations",
                         "stations": await self.telemetry.health()})
        return rows

    # -- lifecycle -----------------------------------------------------------------------

    def kick(self) -> None:
        self.expiry.wake.set()

    async def poll_job(self, name: str) -> None:
        src = self.sources.get(name)
        if src is not None and src.enabled:
            await self.poller.poll(src)

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.expiry.run(), name="expiry"))
        polls = self.sources.of_kind("cap_poll")
        if polls:
            self.scheduler = AsyncIOScheduler(timezone=UTC)
            for src in polls:
                self.scheduler.add_job(
                    self.poll_job, IntervalTrigger(seconds=src.interval_seconds), args=[src.name],
                    id=f"poll:{src.name}", max_instances=1, coalesce=True,
                    next_run_time=datetime.now(UTC))
            self.scheduler.start(paused=not self.autopoll)
        for src in self.sources.of_kind("telemetry"):
            if src.mqtt_url:
                self._tasks.append(asyncio.create_task(
                    self.telemetry.run_mqtt(src), name=f"mqtt:{src.name}"))
        log.info("feeds started", poll=[s.name for s in polls],
                 push=[s.name for s in self.sources.of_kind("cap_push")],
                 stations=len(self.telemetry.stations.by_id))

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
