"""Rendering message bodies from the operator's templates, for every path that writes
deliveries (first sends, escalation rungs, lifted notices, loudspeaker fallbacks).

Confirm links (/c/{token}) are minted here when a template uses {link}: the engine only
knows the `Links` protocol; warnd.confirm.links.LinkIssuer implements it and is handed in by
the composition root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from warnd.core.domain import AlertStatus, Colour, PersonView, RegionView
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.templates import (
    MAX_AREA,
    MAX_HEADLINE,
    MAX_INSTRUCTION,
    MAX_SENDER,
    Templates,
    area_words,
    clip,
    headline_without_sender,
    sentence,
)
from warnd.db.models import Alert, Call

DRILL_TAGS = {AlertStatus.EXERCISE.value: "【演练】", AlertStatus.TEST.value: "【测试】"}
# Templates whose {headline}{instruction} a GB/T message's own text for the channel replaces
# (alerts.channel_texts); reminders and escalations keep the short headline.
CHANNEL_TEXT_TEMPLATES = frozenset({"warning", "update_info", "speaker_text"})


class Links(Protocol):
    """Single-use confirm links bound to one call and one recipient."""

    def expiry(self, alert: Alert, now: datetime) -> datetime: ...

    def row(self, *, call_id: int, alert_id: int, person_id: int, expires_at: datetime, now: datetime,
            purpose: str = ...) -> tuple[str, dict[str, Any]]: ...

    def url(self, token: str, purpose: str = ...) -> str: ...

    async def insert_rows(self, s: AsyncSession, rows: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class MessageContext:
    templates: Templates
    tag: str
    sender: str
    headline: str
    step: str
    colour: str
    instruction: str
    area: str

    @classmethod
    def of(cls, alert: Alert, templates: Templates, *, policy: Policy | None = None,
           regions: Mapping[str, RegionView] | None = None) -> MessageContext:
        """The values every text of `alert` shares: the sender named once, the area in words
        (from the covered regions when they are loaded, else the CAP areaDesc), and an action
        (the CAP <instruction>, else the policy's 防御指引 for the hazard and step)."""
        sender = clip(alert.sender_name or alert.sender, MAX_SENDER)
        instruction = alert.instruction.strip()
        if not instruction and policy is not None:
            instruction = policy.guidance_for(alert.hazard, alert.step)
        codes = vars(alert).get("region_codes")  # deferred on escalation's batch loads
        area = area_words(codes, regions) if codes and regions else ""
        return cls(
            templates=templates, tag=DRILL_TAGS.get(alert.status, ""), sender=sender,
            headline=clip(headline_without_sender(alert.headline, alert.sender_name), MAX_HEADLINE),
            step=templates.step_label(alert.step),
            colour=Colour(alert.colour).zh if alert.colour in set(Colour) else alert.colour,
            instruction=sentence(clip(instruction, MAX_INSTRUCTION)),
            area=area or clip(alert.area_desc, MAX_AREA) or "本地",
        )

    def with_channel_text(self, text: str) -> MessageContext:
        """The producer's own text for this channel (GB/T <method>) in place of the headline
        and instruction."""
        return replace(self, headline=text.strip().rstrip("。"), instruction="")


def render(ctx: MessageContext, template: str, recipient: PersonView | None, *, roles: Roles,
           call: Call | None = None, official: PersonView | None = None,
           region_name: str = "", **extra: object) -> str:
    return ctx.templates.render(
        template, tag=ctx.tag, sender=ctx.sender, headline=ctx.headline, step=ctx.step,
        colour=ctx.colour, instruction=ctx.instruction, area=ctx.area,
        name=recipient.name if recipient is not None else "",
        code=call.short_code if call else extra.pop("code", ""), official=official.name if official else "",
        role=roles.label(official.role) if official else "", region=region_name, **extra,
    )


def address_for(person: PersonView, channel: str) -> str:
    if channel == "wecom":
        return person.wecom_userid or ""
    if channel == "voice":
        return person.phone or person.phone2 or ""  # a landline-only official can still be called
    return person.phone  # sms: the mobile, "" when there is none


class Composer:
    """Message bodies for one transaction's worth of deliveries. Links minted on the way are
    collected and stored with `flush_links` in the same transaction as the deliveries."""

    def __init__(self, templates: Templates, roles: Roles, links: Links | None, *, policy: Policy | None = None,
                 regions: Mapping[str, RegionView] | None = None):
        self.templates, self.roles, self.links = templates, roles, links
        self.policy, self.regions = policy, regions
        self._contexts: dict[int, MessageContext] = {}
        self._link_rows: list[dict[str, Any]] = []

    def context(self, alert: Alert) -> MessageContext:
        key = alert.id or 0
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = MessageContext.of(alert, self.templates, policy=self.policy,
                                                          regions=self.regions)
        return ctx

    def body(self, alert: Alert, template: str, channel: str, recipient: PersonView, now: datetime, *,
             call_id: int | None = None, call: Call | None = None, official: PersonView | None = None,
             region_name: str = "", **values: object) -> str:
        """Render `template` (or its per-channel override) for `recipient`; a {link} is a fresh
        token bound to the call and this recipient."""
        name = self.templates.pick(template, channel)
        link = ""
        cid = call.id if call is not None else call_id
        if self.links is not None and cid is not None and alert.id is not None and self.templates.uses(name, "link"):
            token, row = self.links.row(call_id=cid, alert_id=alert.id, person_id=recipient.id,
                                        expires_at=self.links.expiry(alert, now), now=now)
            self._link_rows.append(row)
            link = self.links.url(token)
        ctx = self.context(alert)
        own = (alert.channel_texts or {}).get(channel) if template in CHANNEL_TEXT_TEMPLATES else None
        if own:
            ctx = ctx.with_channel_text(str(own))
        return render(ctx, name, recipient, roles=self.roles, call=call, official=official,
                      region_name=region_name, link=link, **values)

    async def flush_links(self, s: AsyncSession) -> None:
        if self._link_rows and self.links is not None:
            rows, self._link_rows = self._link_rows, []
            await self.links.insert_rows(s, rows)
