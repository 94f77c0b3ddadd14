"""Operator-editable message templates (config/templates.toml), validated at load."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from warnd.core.domain import Step
from warnd.paths import default_config

PLACEHOLDERS = frozenset(
    "tag sender headline area colour step instruction code name official role region count details link".split()
)
# Optional per-channel tables ([voice], [wecom]) override [sms] texts of the same name.
CHANNEL_TABLES = ("voice", "wecom")
REQUIRED = ("warning", "update_info", "resend", "deputy", "superior", "cancel_notice", "gap_notice", "reply_help")


class TemplateError(ValueError):
    pass


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
        return self.channels[table][name] if dot else self.sms[template]

    def uses(self, template: str, placeholder: str) -> bool:
        return any(f == placeholder for _, f, _, _ in string.Formatter().parse(self.text(template)))

    def render(self, template: str, /, **values: object) -> str:
        return self.text(template).format_map(_Defaults(values))

    def step_label(self, step: Step | str) -> str:
        return self.steps.get(str(step), str(step))


class _Defaults(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


def load_templates(path: Path | None = None) -> Templates:
    path = path or default_config("templates.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TemplateError(f"{path}: {e}") from e
    sms = raw.get("sms", {})
    for name in REQUIRED:
        if name not in sms:
            raise TemplateError(f"{path}: [sms].{name} is missing")
    for table in raw:
        if table not in ("sms", "steps", *CHANNEL_TABLES):
            raise TemplateError(f"{path}: unknown table [{table}] (use sms, steps, {', '.join(CHANNEL_TABLES)})")
    channels = {t: dict(raw[t]) for t in CHANNEL_TABLES if t in raw}
    for table, texts in [("sms", sms), *channels.items()]:
        for name, text in texts.items():
            if table != "sms" and name not in sms:
                raise TemplateError(f"{path}: [{table}].{name} overrides no [sms] template")
            for _, fld, _, _ in string.Formatter().parse(text):
                if fld is not None and fld not in PLACEHOLDERS:
                    raise TemplateError(f"{path}: [{table}].{name} uses unknown placeholder {{{fld}}}")
    steps = {s.value: str(raw.get("steps", {}).get(s.value, s.value)) for s in Step}
    return Templates(sms=dict(sms), steps=steps, channels=channels)
