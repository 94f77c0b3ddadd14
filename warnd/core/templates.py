"""Operator-editable message templates (templates.toml, read and checked by
warnd.config.templates): the placeholders they may use and how they are filled."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from warnd.core.domain import Level, RegionView, Step
from warnd.core.targeting import region_index

PLACEHOLDERS = frozenset(
    "tag sender headline area colour step instruction code name official role region count details link"
    " channel error source minutes shelter".split()
)
# Optional per-channel tables ([voice], [wecom]) override [sms] texts of the same name.
CHANNEL_TABLES = ("voice", "wecom")
REQUIRED = ("warning", "update_info", "resend", "deputy", "superior", "cancel_notice", "gap_notice", "reply_help")
# Texts a county may override; warnd falls back on these when templates.toml has none.
OPTIONAL = {
    "duty_notice": "{tag}【值班室提醒】{details}",
    # What the duty notice says ({details} above) for each failure nobody would otherwise see.
    "notice_send_rejected": "“{headline}”有{count}人的{channel}被拒绝、未送达：{details}。原因：{error}。请电话通知",
    "notice_provider_failing": "{channel}平台连续拒绝发送（{count}条均失败），预警发不出去。原因：{error}。"
                               "请检查签名、模板和账户，并电话通知责任人",
    "notice_source_stale": "信息源“{source}”已{minutes}分钟没有更新，可能已中断（{error}）。请检查并留意上级预警",
    "notice_empty_duty_room": "{official}（{role}，{region}）未确认{step}“{headline}”，已转值班室，但值班室没有值班员",
    # To the public (warnd.public): no reply instruction, no link; the action, and the 转移地点
    # when the danger zone has one (`<template>_shelter`).
    "public": "{tag}【{colour}{step}】{sender}：{headline}。{instruction}",
    "public_shelter": "{tag}【{colour}{step}】{sender}：{headline}。{instruction}请立即转移至{shelter}。",
}


@dataclass(frozen=True)
class Templates:
    sms: dict[str, str]
    steps: dict[str, str]
    channels: dict[str, dict[str, str]] = field(default_factory=dict)  # [voice] / [wecom] overrides

    def pick(self, template: str, channel: str) -> str:
        """The template to use on `channel`: "voice.warning" when [voice] overrides it."""
        return f"{channel}.{template}" if template in self.channels.get(channel, {}) else template

    def text(self, template: str) -> str:
        table, dot, name = template.partition(".")
        if dot:
            return self.channels[table][name]
        return self.sms[template] if template in self.sms else OPTIONAL[template]

    def uses(self, template: str, placeholder: str) -> bool:
        return any(f == placeholder for _, f, _, _ in string.Formatter().parse(self.text(template)))

    def render(self, template: str, /, **values: object) -> str:
        return self.text(template).format_map(_Defaults(values))

    def step_label(self, step: Step | str) -> str:
        return self.steps.get(str(step), str(step))


class _Defaults(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


# -- what a message may hold -----------------------------------------------------------------
# A Chinese SMS is one 70-character segment, or 67-character segments when longer; the
# provider prepends 【签名】. warnd keeps a warning within MAX_SMS_SEGMENTS.
SMS_SEGMENT_CHARS = 70
SMS_LONG_SEGMENT_CHARS = 67
MAX_SMS_SEGMENTS = 4
# A loudspeaker speaks about four characters a second and repeats the text (`repeat`, 3 by
# default): 240 characters is a minute a play. The contract allows 1000 (docs/mqtt.md).
MAX_TTS_CHARS = 240
MAX_SENDER = 20
MAX_HEADLINE = 40
MAX_AREA = 30
MAX_INSTRUCTION = 90


def sms_segments(text: str, sign: str = "") -> int:
    """How many segments the provider bills for `text` signed 【sign】."""
    n = len(text) + (len(sign) + 2 if sign else 0)
    if n <= SMS_SEGMENT_CHARS:
        return 1
    return -(-n // SMS_LONG_SEGMENT_CHARS)


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at the last sentence or clause end that keeps
    at least half of it, else with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(c) for c in "。！；")
    if cut >= limit // 2:
        return head[: cut + 1]
    return text[: limit - 1] + "…"


def sentence(text: str) -> str:
    """`text` ending as a sentence (so the next one can follow it), or empty."""
    text = text.strip()
    if text and text[-1] not in "。！？.!?…":
        text += "。"
    return text


_ISSUED_BY = re.compile(r"^[^，,。：:；;\s]{2,20}?发布(.+)$")


def headline_without_sender(headline: str, sender: str) -> str:
    """"沅陵县气象台发布暴雨红色预警信号" from 沅陵县气象台 → "暴雨红色预警信号": the templates
    name the sender once ("{sender}发布{headline}")."""
    h = headline.strip()
    if sender and h.startswith(sender):
        rest = h[len(sender):].lstrip(" ：:，,")
        rest = rest[2:] if rest.startswith("发布") else rest
        return rest.strip() or h
    issued = _ISSUED_BY.match(h)  # "沅陵县发布暴雨黄色预警": another name for the issuer
    return issued.group(1).strip() if issued else h


def area_words(codes: Iterable[str], regions: Mapping[str, RegionView], limit: int = MAX_AREA) -> str:
    """The covered area in words, from the region tree: 沅陵县全境; 官庄镇; 官庄镇辰龙关村、
    黄土村; shortened when longer than `limit` (官庄镇辰龙关村等5个村; 官庄镇、马底驿乡等4个乡镇).
    Empty when no code is known."""
    covered = {c for c in codes if c in regions}
    if not covered:
        return ""
    index = region_index(regions)  # built once per roster snapshot: its children, its codes in order
    # Every region with a covered descendant (or covered itself): walked up from the covered.
    touched_codes: set[str] = set()
    for c in covered:
        code: str | None = c
        while code is not None and code not in touched_codes:
            touched_codes.add(code)
            parent = regions.get(code)
            code = parent.parent_code if parent is not None else None
    whole_memo: dict[str, bool] = {}

    def whole(code: str) -> bool:
        """Covered itself, or every child is (a county of townships, a village of groups)."""
        if code in covered:
            return True
        if code not in touched_codes:
            return False  # nothing under it is covered
        if code not in whole_memo:
            kids = index.children.get(code, ())
            whole_memo[code] = bool(kids) and all(whole(k) for k in kids)
        return whole_memo[code]

    counties = [regions[c] for c in index.sorted_codes if regions[c].level == Level.COUNTY]
    if len(counties) == 1 and whole(counties[0].code):
        return f"{counties[0].name}全境"
    townships = [regions[c] for c in sorted(touched_codes) if c in regions and regions[c].level == Level.TOWNSHIP]
    parts: list[tuple[RegionView, list[str]]] = []  # township, its places ([] = all of it)
    for t in townships:
        if whole(t.code):
            parts.append((t, []))
            continue
        places = []
        for v in (regions[c] for c in index.children.get(t.code, ())):
            if whole(v.code):
                places.append(v.name)
            else:
                places += [g.name if g.name.startswith(v.name) else v.name + g.name
                           for g in (regions[c] for c in index.children.get(v.code, ())) if whole(g.code)]
        parts.append((t, places))
    loose = [regions[c].name for c in sorted(covered) if regions[c].level in (Level.VILLAGE, Level.GROUP)
             and (regions[c].parent_code or "") not in regions]  # orphans

    def detailed(t: RegionView, places: list[str]) -> str:
        return t.name + "、".join(places) if places else t.name

    def counted(t: RegionView, places: list[str]) -> str:
        unit = "个村" if all(p.endswith("村") for p in places) else "处"
        return f"{t.name}{places[0]}等{len(places)}{unit}" if len(places) > 1 else detailed(t, places)

    for form in (detailed, counted):
        text = "，".join([form(t, p) for t, p in parts] + loose)
        if len(text) <= limit:
            return text
    names = [t.name for t, _ in parts] or loose
    for shown in (3, 2, 1):
        text = "、".join(names[:shown]) + (f"等{len(names)}个乡镇" if len(names) > shown else "")
        if len(text) <= limit:
            return text
    return clip(names[0], limit - 6) + f"等{len(names)}个乡镇"
