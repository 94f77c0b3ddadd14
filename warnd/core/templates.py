"""Operator-editable message templates (templates.toml, read and checked by
warnd.config.templates): the placeholders they may use and how they are filled."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from warnd.core.domain import Step

PLACEHOLDERS = frozenset(
    "tag sender headline area colour step instruction code name official role region count details link shelter".split()
)
# Optional per-channel tables ([voice], [wecom]) override [sms] texts of the same name.
CHANNEL_TABLES = ("voice", "wecom")
REQUIRED = ("warning", "update_info", "resend", "deputy", "superior", "cancel_notice", "gap_notice", "reply_help")
# Texts a county may override; warnd falls back on these when templates.toml has none.
OPTIONAL = {
    "duty_notice": "{tag}【值班室提醒】{details}",
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
