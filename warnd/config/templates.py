"""templates.toml → warnd.core.templates.Templates. Every template and placeholder is
checked here, at start-up, not when the text is first needed at 3 a.m."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from warnd.config.errors import TemplateError
from warnd.config.files import package_default
from warnd.config.validation import Strict, problem, read_toml, validate
from warnd.core.domain import Step
from warnd.core.templates import PLACEHOLDERS, REQUIRED, Templates


def _template(v: Any) -> str:
    if not isinstance(v, str):
        raise problem("must be a string")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(v)]
    except ValueError as e:  # an unbalanced { or }
        raise problem(f"is not a valid template: {e}") from None
    for f in fields:
        if f is not None and f not in PLACEHOLDERS:
            raise problem(f"uses unknown placeholder {{{f}}}")
    return v


def _steps(v: Any) -> Any:
    if isinstance(v, dict):
        known = [s.value for s in Step]
        for k in v:
            if k not in known:
                raise problem(f"unknown step (use {', '.join(known)})", k)
    return v


Text = Annotated[str, BeforeValidator(_template)]


class TemplatesSpec(Strict):
    steps: Annotated[dict[str, str], BeforeValidator(_steps)] = Field(default_factory=dict)
    sms: dict[str, Text] = Field(default_factory=dict)
    # Per-channel overrides of [sms] texts of the same name.
    voice: dict[str, Text] = Field(default_factory=dict)
    wecom: dict[str, Text] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> TemplatesSpec:
        for name in REQUIRED:
            if name not in self.sms:
                raise problem("missing required template", "sms", name)
        for table in ("voice", "wecom"):
            for name in getattr(self, table):
                if name not in self.sms:
                    raise problem("overrides no [sms] template", table, name)
        return self

    def build(self) -> Templates:
        channels = {t: dict(getattr(self, t)) for t in ("voice", "wecom") if getattr(self, t)}
        steps = {s.value: self.steps.get(s.value, s.value) for s in Step}
        return Templates(sms=dict(self.sms), steps=steps, channels=channels)


def templates_from(raw: Any, source: str = "<templates>") -> Templates:
    return validate(TemplatesSpec, raw, source, TemplateError).build()


def load_templates(path: Path | None = None) -> Templates:
    """templates.toml at `path` (None: the package's default)."""
    path = path or package_default("templates.toml")
    return templates_from(read_toml(path, TemplateError), str(path))
