"""compose.toml → warnd.core.compose.ComposeTexts: the joint texts (气象预警 + 防御指引) the
console's 发布预警 starts from. Checked at start-up: unknown placeholders, colours or hazards
are refused with the key that is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from warnd.config.errors import ConfigError
from warnd.config.files import package_default
from warnd.config.validation import Strict, context, problem, read_toml, validate
from warnd.core.compose import TEXT_PLACEHOLDERS, ComposeTexts, HazardTexts, placeholders_of
from warnd.core.domain import Colour


class ComposeTextsError(ConfigError):
    """compose.toml"""


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise problem("must be a string")
    try:
        used = placeholders_of(v)
    except ValueError as e:  # an unbalanced { or }
        raise problem(f"is not a valid template: {e}") from None
    unknown = sorted(used - TEXT_PLACEHOLDERS)
    if unknown:
        raise problem(f"uses unknown placeholder {{{unknown[0]}}} (use {', '.join(sorted(TEXT_PLACEHOLDERS))})")
    return v


def _guidance(v: Any) -> Any:
    if isinstance(v, dict):
        for k in v:
            if k not in {c.value for c in Colour}:
                raise problem(f"unknown colour (use {', '.join(c.value for c in Colour)})", k)
    return v


Text = Annotated[str, BeforeValidator(_text)]
Guidance = Annotated[dict[str, Text], BeforeValidator(_guidance)]


class DefaultSpec(Strict):
    headline: Text
    description: Text
    guidance: Guidance

    @field_validator("guidance")
    @classmethod
    def _every_colour(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [c.value for c in Colour if c.value not in v]
        if missing:
            raise problem(f"needs a text for every colour (missing: {', '.join(missing)})")
        return v


class HazardSpec(Strict):
    headline: Text = ""
    description: Text = ""
    guidance: Guidance = Field(default_factory=dict)


class ComposeSpec(Strict):
    default: DefaultSpec
    hazards: dict[str, HazardSpec] = Field(default_factory=dict)

    @field_validator("hazards")
    @classmethod
    def _known(cls, v: dict[str, HazardSpec], info: ValidationInfo) -> dict[str, HazardSpec]:
        known = context(info).get("hazards")
        if known is not None:
            for name in v:
                if name not in known:
                    raise problem("unknown hazard (not in vocabulary.toml)", name)
        return v

    def build(self) -> ComposeTexts:
        def of(s: DefaultSpec | HazardSpec) -> HazardTexts:
            return HazardTexts(s.headline, s.description, dict(s.guidance))
        return ComposeTexts(of(self.default), {k: of(v) for k, v in self.hazards.items()})


def compose_texts_from(raw: Any, source: str = "<compose>", known_hazards: Sequence[str] | None = None
                       ) -> ComposeTexts:
    ctx = {"hazards": set(known_hazards)} if known_hazards is not None else {}
    return validate(ComposeSpec, raw, source, ComposeTextsError, context=ctx).build()


def load_compose_texts(path: Path | None = None, known_hazards: Sequence[str] | None = None) -> ComposeTexts:
    """compose.toml at `path` (None: the package's default)."""
    path = path or package_default("compose.toml")
    return compose_texts_from(read_toml(path, ComposeTextsError), str(path), known_hazards)
