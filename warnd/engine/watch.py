"""The watch module: failures that happen away from any one decision, told to the duty room
(engine/notices.py: an error-level log line, an event and an SMS to whoever is on duty).

- **A send rejected permanently** (`delivery_failed`): one notice per warning and channel
  per pass, naming who was not reached and why.
- **A provider rejecting every message**: within `window`, at least `min_failures` messages
  on one channel were refused for good (a wrong 短信签名, an unapproved template) and none was
  accepted. One notice while the condition holds (it re-arms once a message gets through);
  the individual rejections on that channel are covered by it. A provider that cannot be
  reached or answers 5xx is the outbox's to announce (provider_failing / provider_recovered):
  its messages are not refused, they wait and are retried.
- **A source gone stale** (no update for three poll intervals, the same rule as `warnd check`)
  or failing `min_failures` polls in a row: one notice per episode.

It reads only what other modules recorded (events, deliveries, feed_state), so it needs no
hook in them; the outbox's passes wake it (Runner.kick), and it looks again every
`poll_seconds` for what another instance recorded.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlmodel import col, select

from warnd.clock import Clock
from warnd.core.domain import Purpose
from warnd.core.readiness import SourceFacts, check_sources_facts
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Delivery, Event, FeedState, Person
from warnd.engine.module import ModuleBase
from warnd.engine.notices import notify_duty_room
from warnd.engine.roster import RosterCache

log = structlog.get_logger("warnd.watch")

CHANNEL_ZH = {"sms": "短信", "voice": "语音电话", "wecom": "企业微信", "speaker": "应急广播"}
MAX_NAMES = 8  # names listed in one notice; the rest are counted


@dataclass(frozen=True)
class _Failure:
    event_id: int
    delivery_id: int
    alert_id: int | None
    person_id: int | None
    channel: str
    purpose: str
    error: str


class Watch(ModuleBase):
    name = "watch"
    poll_seconds = 30.0

    def __init__(self, db: Database, clock: Clock, roster: RosterCache, templates: Templates, *,
                 sources: Mapping[str, tuple[str, float | None]] | None = None,
                 window: timedelta = timedelta(minutes=10), min_failures: int = 3,
                 on_change: Callable[[], None] = lambda: None):
        super().__init__()
        self.db, self.clock, self.roster, self.templates = db, clock, roster, templates
        self.sources = dict(sources or {})
        self.window, self.min_failures, self.on_change = window, min_failures, on_change
        self._seen: dict[int, datetime] = {}  # delivery_failed events already told, by id
        self._failing: set[str] = set()  # channels told as rejecting everything, until one gets through
        self._sources_told: set[str] = set()  # source episodes told (name:code:since)

    async def step(self) -> bool:
        now = self.clock.now()
        failing = await self._providers(now)
        told = await self._rejections(now, failing)
        told += await self._sources(now)
        if told:
            self.on_change()  # notices are deliveries: wake the outbox
        return False  # one look per wake or poll; nothing here is a backlog

    # -- sends -----------------------------------------------------------------------------

    async def _providers(self, now: datetime) -> set[str]:
        """Channels on which, within the window, messages were refused and none was accepted."""
        since = now - self.window
        async with self.db.read() as s:
            bad = (await s.exec(select(Event.delivery_id, Event.data).where(
                Event.kind == "delivery_failed", col(Event.at) >= since))).all()
            delivery_ids = {d for d, _ in bad if d is not None}
            channel_of = dict((await s.exec(select(Delivery.id, Delivery.channel).where(
                col(Delivery.id).in_(delivery_ids)))).all()) if delivery_ids else {}
            per_channel: dict[str, set[int]] = defaultdict(set)
            last_error: dict[str, str] = {}
            for did, data in bad:
                channel = channel_of.get(did)
                if channel is None or did is None:
                    continue
                per_channel[channel].add(did)
                last_error[channel] = str((data or {}).get("error", ""))
            # Only where enough failed: did anything get through meanwhile?
            accepted = {ch for ch, ids in per_channel.items() if len(ids) >= self.min_failures and (await s.exec(
                select(Delivery.id).where(Delivery.channel == ch, col(Delivery.sent_at) >= since).limit(1))).first()}
        failing = {ch for ch, ids in per_channel.items() if len(ids) >= self.min_failures and ch not in accepted}
        self._failing &= failing | set(per_channel)  # a message got through: re-arm
        self._failing -= accepted
        for channel in sorted(failing - self._failing):
            count = len(per_channel[channel])
            details = self.templates.render("notice_provider_failing", channel=CHANNEL_ZH.get(channel, channel),
                                            count=count, error=_short(last_error.get(channel, "")))
            async with self.db.session() as s, s.begin():
                await notify_duty_room(s, await self.roster.get(), self.templates, now, kind="provider_failing",
                                       details=details, key=f"provider:{channel}:{now:%Y%m%dT%H}",
                                       for_channel=channel, failures=count, error=last_error.get(channel, ""))
            self._failing.add(channel)
        return failing

    async def _rejections(self, now: datetime, failing: set[str]) -> int:
        since = now - max(self.window, timedelta(hours=1))
        self._seen = {i: at for i, at in self._seen.items() if at >= since}
        async with self.db.read() as s:
            rows = (await s.exec(select(Event).where(Event.kind == "delivery_failed", col(Event.at) >= since)
                                 .order_by(col(Event.id)))).all()
        new = [e for e in rows if e.id is not None and e.id not in self._seen]
        for e in new:
            self._seen[e.id or 0] = e.at
        failures = [_Failure(e.id or 0, e.delivery_id or 0, e.alert_id, e.person_id, str(e.data.get("channel", "")),
                             str(e.data.get("purpose", "")), str(e.data.get("error", ""))) for e in new]
        groups: dict[tuple[int | None, str], list[_Failure]] = defaultdict(list)
        for f in failures:
            if f.purpose == Purpose.DUTY_NOTICE:
                # A notice that cannot reach the duty room cannot be told to it: say it here.
                log.error("duty notice rejected", delivery=f.delivery_id, channel=f.channel, error=f.error)
                continue
            if f.channel in failing:
                continue  # covered by the provider notice
            groups[(f.alert_id, f.channel)].append(f)
        if not groups:
            return 0
        async with self.db.read() as s:
            alert_ids = {a for a, _ in groups if a is not None}
            person_ids = {f.person_id for g in groups.values() for f in g if f.person_id is not None}
            headlines = dict((await s.exec(select(Alert.id, Alert.headline).where(
                col(Alert.id).in_(alert_ids)))).all()) if alert_ids else {}
            statuses = dict((await s.exec(select(Alert.id, Alert.status).where(
                col(Alert.id).in_(alert_ids)))).all()) if alert_ids else {}
            names = dict((await s.exec(select(Person.id, Person.name).where(
                col(Person.id).in_(person_ids)))).all()) if person_ids else {}
        roster = await self.roster.get()
        told = 0
        for (alert_id, channel), group in groups.items():
            who = [names.get(f.person_id, "?") for f in group if f.person_id is not None]
            listed = "、".join(who[:MAX_NAMES]) + (f"等{len(who)}人" if len(who) > MAX_NAMES else "")
            details = self.templates.render(
                "notice_send_rejected", headline=headlines.get(alert_id, "") if alert_id is not None else "",
                channel=CHANNEL_ZH.get(channel, channel), count=len(group), details=listed,
                error=_short(group[-1].error))
            digest = hashlib.sha1(",".join(str(f.delivery_id) for f in group).encode()).hexdigest()[:16]
            async with self.db.session() as s, s.begin():
                told += await notify_duty_room(
                    s, roster, self.templates, now, kind="send_rejected", details=details, key=f"rejected:{digest}",
                    alert_id=alert_id, drill_status=statuses.get(alert_id, "") if alert_id is not None else "",
                    for_channel=channel, deliveries=[f.delivery_id for f in group], error=group[-1].error)
        return told

    # -- sources ---------------------------------------------------------------------------

    async def _sources(self, now: datetime) -> int:
        if not self.sources:
            return 0
        async with self.db.read() as s:
            states = {st.source: st for st in (await s.exec(select(FeedState))).all()}
        facts = []
        for name, (kind, interval) in sorted(self.sources.items()):
            st = states.get(name)
            facts.append(SourceFacts(name=name, kind=kind, interval_seconds=interval,
                                     last_success_at=st.last_success_at if st else None,
                                     last_error=st.last_error if st else None,
                                     last_error_at=st.last_error_at if st else None,
                                     failures=st.failures if st else 0))
        told = 0
        current: set[str] = set()
        for f in check_sources_facts(facts, now):
            st = states.get(f.source or "")
            if f.code == "source_failing" and (st is None or st.failures < self.min_failures):
                continue  # one failed poll is retried, not announced
            if f.code not in ("source_stale", "source_failing"):
                continue  # never polled yet / push source quiet between storms: `warnd check` says so
            episode = f"{f.source}:{f.code}:{f.since.isoformat() if f.since else '-'}"
            current.add(episode)
            if episode in self._sources_told:
                continue
            minutes = int((now - f.since).total_seconds() // 60) if f.since else 0
            details = self.templates.render("notice_source_stale", source=f.source or "", minutes=minutes,
                                            error=_short(f.detail or "无"))
            async with self.db.session() as s, s.begin():
                told += await notify_duty_room(s, await self.roster.get(), self.templates, now, kind="source_stale",
                                               details=details, key=f"source:{episode}", source=f.source,
                                               condition=f.code, last_success_at=f.since.isoformat() if f.since else None,
                                               error=f.detail)
            self._sources_told.add(episode)
        self._sources_told &= current
        return told


def _short(error: str, limit: int = 60) -> str:
    error = " ".join(error.split())
    return error if len(error) <= limit else error[: limit - 1] + "…"

