"""Wires the parts into one running engine: database, clock, policy, channels, workers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from channels.base import Channel
from warnd.clock import Clock, clock_from_spec
from warnd.config import (
    Settings,
    SettingsError,
    load_policy,
    load_roles,
    load_templates,
    load_vocabulary,
)
from warnd.confirm.links import LinkIssuer
from warnd.db.engine import Database
from warnd.engine.calls import CallService, EscalationWorker
from warnd.engine.inbound import InboundHandler
from warnd.engine.ingest import Ingestor
from warnd.engine.outbox import Outbox
from warnd.engine.roster import RosterCache
from warnd.feeds.service import FeedService

if TYPE_CHECKING:
    from warnd.speakers.service import SpeakerService

log = structlog.get_logger("warnd")


def _path(p: str) -> Path | None:
    return Path(p) if p else None


def build_channels(settings: Settings) -> dict[str, Channel]:
    """SMS, plus voice and WeCom when configured ([voice], [wecom])."""
    from warnd.confirm.channels import confirm_channels

    try:
        sms = _sms_channels(settings)
    except Exception as e:  # the provider's client (or its SDK) refused its settings
        raise SettingsError(f"sms.{settings.sms.provider}: {e}") from None
    return {**sms, **confirm_channels(settings)}


def _sms_channels(settings: Settings) -> dict[str, Channel]:
    """The SMS channel from configuration (provider SDK clients are created here)."""
    sms = settings.sms
    public = settings.server.public_base_url.rstrip("/")
    if sms.provider == "tencent":
        from channels.sms_tencent import TencentSms

        t = sms.tencent
        return {"sms": TencentSms(secret_id=t.secret_id, secret_key=t.secret_key, sdk_app_id=t.sdk_app_id,
                                  sign_name=t.sign_name, template_id=t.template_id, region=t.region,
                                  endpoint=t.endpoint or None, callback_token=t.callback_token)}
    if sms.provider == "twilio":
        from channels.sms_twilio import TwilioSms

        w = sms.twilio
        return {"sms": TwilioSms(account_sid=w.account_sid, auth_token=w.auth_token, from_number=w.from_number,
                                 public_base_url=public, api_base_url=w.api_base_url or None)}
    raise ValueError(f"unknown sms.provider {sms.provider!r}: use tencent or twilio")


@dataclass
class Engine:
    settings: Settings
    db: Database
    clock: Clock
    roster: RosterCache
    ingestor: Ingestor
    calls: CallService
    inbound: InboundHandler
    outbox: Outbox
    escalation: EscalationWorker
    channels: Mapping[str, Channel]
    _tasks: list[asyncio.Task[None]]
    feeds: FeedService | None = None
    links: LinkIssuer | None = None  # signed confirm links (/c/{token}), served by api/app.py
    speakers: SpeakerService | None = None  # [speakers] enabled: village loudspeakers over MQTT

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None,
              channels: Mapping[str, Channel] | None = None) -> Engine:
        clock = clock or clock_from_spec(settings.clock.spec)
        roles = load_roles(_path(settings.policy.roles))
        policy = load_policy(_path(settings.policy.path), roles)
        templates = load_templates(_path(settings.policy.templates))
        vocab = load_vocabulary(_path(settings.policy.vocabulary))
        db = Database(settings.database.url, durable=settings.database.durable)
        roster = RosterCache(db)
        chans = dict(channels) if channels is not None else build_channels(settings)
        holder: dict[str, Engine] = {}

        def kick() -> None:
            if "e" in holder:
                holder["e"].outbox.wake.set()
                holder["e"].escalation.wake.set()
                if holder["e"].feeds is not None:
                    holder["e"].feeds.kick()
                if holder["e"].speakers is not None:
                    holder["e"].speakers.kick()

        ingestor = Ingestor(db, clock, policy, vocab, templates, roles, roster, settings.county, kick)
        calls = CallService(db, clock, policy, templates, roles, roster, ingestor, kick)
        inbound = InboundHandler(db, clock, calls, templates, settings.delivery, kick)

        outbox = Outbox(db, clock, chans, settings.delivery, after_sent=CallService.restart_windows,
                        on_change=lambda: holder["e"].escalation.wake.set() if "e" in holder else None)
        inbound.sends_recorded = lambda: outbox.recorded
        inbound.wait_records_after = outbox.wait_records_after
        engine = cls(settings, db, clock, roster, ingestor, calls, inbound, outbox,
                     EscalationWorker(calls, clock), chans, [])
        engine.feeds = FeedService.build(
            db=db, clock=clock, ingestor=ingestor, vocab=vocab, county=settings.county,
            sources_path=settings.feeds.sources, stations_path=settings.feeds.stations,
            vocabulary_path=settings.policy.vocabulary)
        if settings.speakers.enabled:
            from warnd.speakers.service import SpeakerService

            engine.speakers = SpeakerService(db, clock, settings.speakers, settings.county, policy,
                                             templates, roles, roster, kick)
        holder["e"] = engine
        engine.links = ingestor.links = calls.links = LinkIssuer(settings.server.public_base_url)
        return engine

    async def start(self) -> None:
        await self.db.upgrade()
        self._tasks = [
            asyncio.create_task(self.outbox.run(single_instance=self.db.is_sqlite), name="outbox"),
            asyncio.create_task(self.escalation.run(), name="escalation"),
        ]
        if self.feeds is not None:
            await self.feeds.start()
        if self.speakers is not None:
            self._tasks += [asyncio.create_task(self.speakers.run(), name="speakers"),
                            asyncio.create_task(self.speakers.channel.run(), name="speakers-mqtt")]
        log.info("engine started", database=self.db.url.split("@")[-1], clock=type(self.clock).__name__)

    async def stop(self) -> None:
        if self.feeds is not None:
            await self.feeds.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in self.channels.values():
            await ch.close()
        await self.db.close()
