"""The composition root: the one place that builds every part of a running warnd and hands
each its collaborators through its constructor — configuration, database, clock, channels,
the engine modules, feeds, loudspeakers, confirm links and pages, and the HTTP application.

    app = App.build(settings)            # or App.build(settings, clock=ManualClock(), channels={...})
    await app.start()                    # migrations, then every module's loop
    web_app = make_app(app)              # warnd.api.app
    ...
    await app.stop()

Nothing else wires parts together: no module reaches for another through a shared object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from channels import registry
from channels.base import Channel
from warnd.cap.classify import Vocabulary
from warnd.clock import Clock, clock_from_spec
from warnd.config import (
    Settings,
    SettingsError,
    load_policy,
    load_roles,
    load_templates,
    load_vocabulary,
)
from warnd.config.compose import load_compose_texts
from warnd.confirm.links import LinkIssuer
from warnd.confirm.pages import ConfirmPages
from warnd.core.compose import ComposeTexts
from warnd.core.domain import Purpose
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.engine.approvals import Approvals
from warnd.engine.calls import Calls, restart_windows
from warnd.engine.escalation import Escalation
from warnd.engine.expiry import Expiry
from warnd.engine.inbound import InboundHandler
from warnd.engine.ingest import Ingestor
from warnd.engine.module import Runner
from warnd.engine.outbox import Outbox
from warnd.engine.roster import RosterCache
from warnd.engine.timeline import anchor_clock
from warnd.engine.watch import Watch
from warnd.feeds.service import FeedConfig, FeedLog, FeedService, SourceTrust
from warnd.public.fanout import PublicFanout, budget_for
from warnd.public.optouts import SmsOptOuts
from warnd.public.pacing import PacedChannel
from warnd.speakers.service import SpeakerService

log = structlog.get_logger("warnd")


def _path(p: str) -> Path | None:
    return Path(p) if p else None


def channel_specs(settings: Settings) -> list[registry.ChannelSpec]:
    """The channels the settings ask for: SMS always, voice and WeCom when configured."""
    sms = settings.sms
    specs = [registry.ChannelSpec("sms", "sms", sms.provider, getattr(sms, sms.provider, None), f"sms.{sms.provider}")]
    if sms.backup_provider:
        specs.append(registry.ChannelSpec("sms_backup", "sms", sms.backup_provider, getattr(sms, sms.backup_provider),
                                          f"sms.{sms.backup_provider}"))
    if settings.voice.provider:
        specs.append(registry.ChannelSpec("voice", "voice", settings.voice.provider, settings.voice, "voice",
                                          fallback=sms.twilio))
    if settings.wecom.enabled:
        specs.append(registry.ChannelSpec("wecom", "wecom", "wecom", settings.wecom, "wecom"))
    return specs


def failover_map(settings: Settings, policy: Policy, channels: Mapping[str, Channel]) -> dict[str, str]:
    """Where a message failing too long on a channel goes next: [delivery] failover as given;
    otherwise "sms" to the second SMS provider when there is one, and every policy channel to
    the next one the policy lists (that is configured)."""
    if settings.delivery.failover:
        return dict(settings.delivery.failover)
    order = [c for c in policy.channels if c in channels]
    out = {c: order[i + 1] for i, c in enumerate(order[:-1])}
    if "sms_backup" in channels:
        out["sms"] = "sms_backup"
    return out


def build_channels(settings: Settings) -> dict[str, Channel]:
    try:
        return registry.build(channel_specs(settings), settings.server.public_base_url)
    except registry.ChannelConfigError as e:
        raise SettingsError(str(e)) from None


@dataclass
class App:
    settings: Settings
    clock: Clock
    db: Database
    policy: Policy
    roles: Roles
    templates: Templates
    vocab: Vocabulary
    roster: RosterCache
    channels: Mapping[str, Channel]
    links: LinkIssuer
    runner: Runner
    ingestor: Ingestor
    calls: Calls
    outbox: Outbox
    escalation: Escalation
    expiry: Expiry
    inbound: InboundHandler
    feeds: FeedService
    confirm_pages: ConfirmPages
    approvals: Approvals
    compose_texts: ComposeTexts
    speakers: SpeakerService | None = None
    public: PublicFanout | None = None  # plans public SMS (warnd.public)
    public_outbox: Outbox | None = None  # sends them, apart from officials' traffic
    _started: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None,
              channels: Mapping[str, Channel] | None = None) -> App:
        clock = clock or clock_from_spec(settings.clock.spec)
        roles = load_roles(_path(settings.policy.roles))
        policy = load_policy(_path(settings.policy.path), roles)
        templates = load_templates(_path(settings.policy.templates))
        vocab = load_vocabulary(_path(settings.policy.vocabulary))
        feed_config = FeedConfig.load(sources_path=settings.feeds.sources, stations_path=settings.feeds.stations,
                                      vocabulary_path=settings.policy.vocabulary, known_hazards=vocab.codes,
                                      sl651_tcp=settings.feeds.sl651_tcp, sl651_udp=settings.feeds.sl651_udp,
                                      sl651_idle_seconds=settings.feeds.sl651_idle_seconds)
        chans = dict(channels) if channels is not None else build_channels(settings)
        db = Database(settings.database.url, durable=settings.database.durable,
                      pool_size=settings.database.pool_size, max_overflow=settings.database.max_overflow)
        roster = RosterCache(db)
        links = LinkIssuer(settings.server.public_base_url)
        runner = Runner(clock)
        kick = runner.kick

        feed_log = FeedLog(db, clock)
        trust = SourceTrust(feed_config.sources, vocab, feed_config.wording, feed_log, clock)
        ingestor = Ingestor(db, clock, policy, vocab, templates, roles, roster, settings.county,
                            links=links, prepare=trust.prepare, on_change=kick, cfg=settings.ingest)
        calls = Calls(db, clock, on_change=kick)
        outbox = Outbox(db, clock, chans, settings.delivery, after_sent=restart_windows, on_change=kick,
                        single_instance=db.is_sqlite, roster=roster, templates=templates,
                        failover=failover_map(settings, policy, chans), exclude_purposes=frozenset({Purpose.PUBLIC}))
        public, public_outbox = cls._public(settings, db, clock, policy, templates, chans, kick)
        escalation = Escalation(db, clock, calls, policy, templates, roles, roster, links, on_change=kick)
        expiry = Expiry(db, clock, roster, templates, roles, on_change=kick)
        inbound = InboundHandler(db, clock, calls, templates, settings.delivery, outbox, on_change=kick,
                                 subscriptions=SmsOptOuts())
        feeds = FeedService(db, clock, ingestor, feed_config, settings.county, feed_log)
        speakers = (SpeakerService(db, clock, settings.speakers, settings.county, policy, templates, roles, roster,
                                   on_change=kick, instance=settings.server.instance)
                    if settings.speakers.enabled else None)
        watch = Watch(db, clock, roster, templates, on_change=kick, sources={
            s.name: (s.kind, s.interval_seconds) for s in feed_config.sources.by_name.values() if s.enabled})
        runner.add(outbox, escalation, expiry, watch, *feeds.modules())
        if speakers is not None:
            runner.add(speakers)
        if public is not None and public_outbox is not None:
            runner.add(public, public_outbox)
        pages = ConfirmPages(db, clock, calls, links, kick)
        approvals = Approvals(db, clock, ingestor, on_change=kick)
        compose_texts = load_compose_texts(_path(settings.console.compose_texts), vocab.codes)
        return cls(settings, clock, db, policy, roles, templates, vocab, roster, chans, links, runner, ingestor,
                   calls, outbox, escalation, expiry, inbound, feeds, pages, approvals, compose_texts, speakers,
                   public, public_outbox)

    @staticmethod
    def _public(settings: Settings, db: Database, clock: Clock, policy: Policy, templates: Templates,
                chans: Mapping[str, Channel], kick: Callable[[], None]) -> tuple[PublicFanout | None, Outbox | None]:
        """The public fan-out and its own outbox, whose channels wait for the provider's rate."""
        if not settings.public.enabled:
            return None, None
        paced: dict[str, Channel] = {}
        for name, ch in chans.items():
            budget = budget_for(settings.public, ch.provider)
            paced[name] = PacedChannel(ch, budget.qps or ch.rate_per_second or 100.0, budget.burst)
        cfg = settings.delivery.model_copy(update={"recipient_min_interval_seconds": 0})  # planned per number
        sender = Outbox(db, clock, paced, cfg, on_change=kick, single_instance=db.is_sqlite,
                        purposes=frozenset({Purpose.PUBLIC}), name="public_outbox")
        return PublicFanout(db, clock, policy, templates, settings.public, chans, on_change=kick), sender

    def kick(self) -> None:
        """Wake every module: something changed that may have made work due."""
        self.runner.kick()
        if self.speakers is not None:
            self.speakers.channel.kick()

    async def start(self) -> None:
        await self.db.upgrade()
        await anchor_clock(self.db, self.clock)  # `scaled:N`: continue the stored timeline
        await self.roster.prime()  # loaded now, not by the first warning after a (re)start
        self.runner.start()
        await self.feeds.start()
        if self.speakers is not None:
            self.runner.start_task(self.speakers.channel.run(), "speakers-mqtt")
        self._started = True
        log.info("engine started", database=self.db.url.split("@")[-1], clock=type(self.clock).__name__,
                 modules=[m.name for m in self.runner.modules])

    async def stop(self) -> None:
        await self.feeds.stop()
        await self.runner.stop()
        for ch in self.channels.values():
            await ch.close()
        await self.db.close()
