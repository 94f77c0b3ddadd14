"""The 发布预警 preview: exactly what each channel will send for a draft and whom it reaches
(officials by the 631 policy, loudspeakers, the public), computed with the same planner,
templates and targeting as the ingest — nothing is stored.

Also the area tree (townships → villages, from the roster tables) and the CAP document of a
draft (warnd/core/compose.py builds it, warnd/cap/writer.py writes it).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import select

from warnd.cap.classify import Vocabulary
from warnd.cap.model import CapArea
from warnd.cap.writer import cap_document
from warnd.config import County, Settings
from warnd.core import speakers as decide
from warnd.core.compose import Draft, Township, draft_message, township_tree
from warnd.core.domain import AlertFacts, AlertStatus, CoverageGap, PersonView
from warnd.core.planner import plan_alert
from warnd.core.policy import Policy
from warnd.core.roles import Roles
from warnd.core.sms import SmsLength, sms_length
from warnd.core.targeting import resolve_area
from warnd.core.templates import Templates
from warnd.db.engine import Database
from warnd.db.models import Alert, Speaker
from warnd.engine.messages import Composer, address_for, render
from warnd.engine.roster import RosterCache, RosterSnapshot

CHANNEL_ZH = {"sms": "短信", "voice": "语音电话", "wecom": "企业微信"}
LINK_SAMPLE = "/c/（每人一个确认链接）"


@dataclass(frozen=True)
class ChannelText:
    channel: str
    label: str
    recipients: int
    text: str
    sms: SmsLength | None = None  # SMS only: length and segments (条)


@dataclass(frozen=True)
class Preview:
    officials: int  # 叫应责任人 the policy calls
    channels: list[ChannelText]
    gaps: list[str]  # 村名 · 职务 of roles that resolve to nobody
    speakers: int | None  # None: loudspeakers not used for this warning
    speakers_dark: int
    speakers_note: str
    speaker_text: str
    public: int  # public dissemination does not exist yet: 0
    public_note: str
    needs_approval: bool
    sample_name: str = ""
    covered: int = 0  # regions covered (expanded)
    sms_total: int = 0  # SMS messages billed: recipients × segments
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComposeContext:
    """What the preview needs, handed in by the console (no App here)."""

    db: Database
    settings: Settings
    policy: Policy
    templates: Templates
    roles: Roles
    vocab: Vocabulary
    roster: RosterCache

    @property
    def county(self) -> County:
        return self.settings.county

    def sms_signature(self) -> str:
        sms = self.settings.sms
        return f"【{sms.tencent.sign_name}】" if sms.provider == "tencent" and sms.tencent.sign_name else ""


async def area_tree(ctx: ComposeContext) -> list[Township]:
    return township_tree((await ctx.roster.get()).regions)


def new_identifier(now: datetime) -> str:
    return f"CONSOLE-{now.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"


def document(ctx: ComposeContext, draft: Draft, author: str, now: datetime, identifier: str | None = None) -> bytes:
    msg = draft_message(draft, identifier=identifier or new_identifier(now),
                        sender=ctx.settings.console.sender(ctx.county.code), sender_name=ctx.county.sender_name,
                        hazard_zh=ctx.vocab.label(draft.hazard), author=author, now=now)
    return cap_document(msg)


def _alert(ctx: ComposeContext, draft: Draft, now: datetime) -> Alert:
    """The alert row the ingest would store (never added to a session)."""
    return Alert(sender=ctx.settings.console.sender(ctx.county.code), identifier="preview", sent=now,
                 status=AlertStatus.EXERCISE if draft.drill else AlertStatus.ACTUAL, msg_type="Alert",
                 source="console", hazard=draft.hazard, colour=draft.colour, step=draft.step,
                 event=f"{ctx.vocab.label(draft.hazard)}{draft.colour.zh}预警", sender_name=ctx.county.sender_name,
                 headline=draft.headline, description=draft.description, instruction=draft.instruction,
                 area_desc=draft.area.description, expires=now + timedelta(hours=draft.hours), received_at=now)


async def preview(ctx: ComposeContext, draft: Draft, now: datetime) -> Preview:
    roster = await ctx.roster.get()
    area = resolve_area((CapArea(draft.area.description, geocodes=tuple(("行政区划代码", c) for c in draft.area.codes)),),
                        roster.regions, ctx.county.code)
    status = AlertStatus.EXERCISE if draft.drill else AlertStatus.ACTUAL
    facts = AlertFacts(0, draft.hazard, draft.colour, draft.step, status, area.codes, now, None,
                       now + timedelta(hours=draft.hours))
    plan = plan_alert(facts, roster.regions, roster.people, ctx.policy, now)
    alert = _alert(ctx, draft, now)
    alert.region_codes = sorted(area.codes)  # the area in words, as the real messages will say it
    composer = Composer(ctx.templates, ctx.roles, None, policy=ctx.policy, regions=roster.regions)
    reach: Counter[str] = Counter()
    sample: dict[str, PersonView] = {}
    for d in plan.deliveries:
        person = roster.by_id[d.person_id]
        if address_for(person, d.channel):
            reach[d.channel] += 1
            sample.setdefault(d.channel, person)
    base = ctx.settings.server.public_base_url.rstrip("/")
    channels = []
    for ch in ctx.policy.channels:
        if ch not in sample:
            continue
        person = sample[ch]
        name = ctx.templates.pick("warning", ch)
        text = render(composer.context(alert), name, person, roles=ctx.roles, link=base + LINK_SAMPLE)
        channels.append(ChannelText(ch, CHANNEL_ZH.get(ch, ch), reach[ch], text,
                                    sms_length(text, ctx.sms_signature()) if ch == "sms" else None))
    speakers, dark, note, speaker_text = await _speakers(ctx, alert, draft, area.codes, now, composer)
    sms = next((c for c in channels if c.sms is not None), None)
    return Preview(
        officials=len(plan.calls), channels=channels, gaps=_gap_names(plan.gaps, roster, ctx.roles),
        speakers=speakers, speakers_dark=dark, speakers_note=note, speaker_text=speaker_text,
        public=0, public_note="未启用（公众短信尚未接入）", needs_approval=draft.needs_approval,
        sample_name=next(iter(sample.values())).name if sample else "", covered=len(area.codes),
        sms_total=sms.recipients * sms.sms.segments if sms is not None and sms.sms is not None else 0,
    )


def _gap_names(gaps: Sequence[CoverageGap], roster: RosterSnapshot, roles: Roles) -> list[str]:
    out = []
    for g in gaps:
        region = roster.regions.get(g.region_code)
        out.append(f"{region.name if region else g.region_code} · {roles.label(g.role)}")
    return out


async def _speakers(ctx: ComposeContext, alert: Alert, draft: Draft, codes: frozenset[str],
                    now: datetime, composer: Composer) -> tuple[int | None, int, str, str]:
    cfg = ctx.settings.speakers
    if not cfg.enabled:
        return None, 0, "未启用（未配置应急广播）", ""
    if draft.step.value not in cfg.steps:
        labels = "、".join(ctx.templates.step_label(s) for s in cfg.steps)
        return None, 0, f"本阶段不播放（应急广播在{labels}阶段播放）", ""
    async with ctx.db.read() as s:
        rows = (await s.exec(select(Speaker).where(Speaker.active == True))).all()  # noqa: E712
    covered = [sp for sp in rows if decide.covered(sp.region_code, set(codes))]
    stale = timedelta(seconds=cfg.stale_after_seconds)
    dark = sum(1 for sp in covered
               if decide.darkness(sp.online, sp.last_seen_at, now, stale, sp.hb_interval_s) is not None)
    ctx_msg = composer.context(alert)
    text = ctx.templates.render("speaker_text", tag=ctx_msg.tag, step=ctx_msg.step, sender=ctx_msg.sender,
                                headline=ctx_msg.headline, instruction=ctx_msg.instruction, area=ctx_msg.area,
                                colour=ctx_msg.colour)
    note = f"其中 {dark} 台离线或未上线（将转鸣锣吹哨/敲门入户）" if dark else ""
    return len(covered), dark, note, text
