"""Operator-editable message templates (config/templates.toml), validated at load."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path

from warnd.domain import Step
from warnd.paths import default_config

PLACEHOLDERS = frozenset(
    "tag sender headline area colour step instruction code name official role region count details".split()
)
REQUIRED = ("warning", "update_info", "resend", "deputy", "superior", "cancel_notice", "gap_notice", "reply_help")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Templates:
    sms: dict[str, str]
    steps: dict[str, str]

    def render(self, template: str, /, **values: object) -> str:
        return self.sms[template].format_map(_Defaults(values))

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
    for name, text in sms.items():
        for _, field, _, _ in string.Formatter().parse(text):
            if field is not None and field not in PLACEHOLDERS:
                raise TemplateError(f"{path}: [sms].{name} uses unknown placeholder {{{field}}}")
    steps = {s.value: str(raw.get("steps", {}).get(s.value, s.value)) for s in Step}
    return Templates(sms=dict(sms), steps=steps)
