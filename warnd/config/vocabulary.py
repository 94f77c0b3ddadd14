"""vocabulary.toml → the classifier's Vocabulary (hazards, colours) and the feeds' Wording
(631 step in words, 解除 liftings). Format: docs/feeds.md §4."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from warnd.cap.classify import OTHER, Hazard, Vocabulary, build_vocabulary, normalise
from warnd.config.errors import VocabularyError
from warnd.config.files import package_default
from warnd.config.validation import Strict, Strs, enum_check, problem, read_toml, validate
from warnd.core.domain import Colour, Step
from warnd.feeds.mapping import DEFAULT_WORDING, Wording

_IDENT_RE = re.compile(r"[a-z][a-z0-9_]*")

ColourT = Annotated[Colour, BeforeValidator(enum_check(
    Colour, "{value!r} is not one of blue/yellow/orange/red"))]
StepT = Annotated[Step, BeforeValidator(enum_check(Step, "{value!r} is not one of {choices}"))]


def _hours(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 24 * 30:
        raise problem("must be a number of hours in (0, 720]")
    return float(v)


Hours = Annotated[float, BeforeValidator(_hours)]
CHANNELS = ("sms", "voice", "wecom", "speaker")


class HazardSpec(Strict):
    zh: str | None = None  # Chinese name for messages (default: the code)
    event_codes: Strs = ()
    keywords: Strs = ()
    expires_hours: Hours | None = None  # lifetime when the message states no expiry


class ExpirySpec(Strict):
    default_hours: Hours = 24.0


def _channel_methods(v: Any) -> Any:
    if not isinstance(v, dict):
        raise problem("must map warnd channels to lists of GB/T method names")
    for k, names in v.items():
        if k not in CHANNELS:
            raise problem(f"{k!r} is not one of {', '.join(CHANNELS)}", k)
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise problem("must be a list of method names", k)
    return v


def _hazard_codes(v: Any) -> Any:
    if not isinstance(v, dict) or not v:
        raise problem("must define at least one hazard")
    for code in v:
        if not _IDENT_RE.fullmatch(code) or code == OTHER:
            raise problem("hazard codes are lower-case identifiers, not 'other'", code)
    return v


class ColourSpec(Strict):
    parameter_names: Strs = ()
    strip_prefixes: Strs = ()
    strip_suffixes: Strs = ()
    values: dict[str, ColourT] = Field(default_factory=dict)
    text: dict[str, ColourT] = Field(default_factory=dict)
    severity: dict[str, ColourT] = Field(default_factory=dict)


class StepsSpec(Strict):
    text: dict[str, StepT] = Field(default_factory=dict)  # phrase → step


class LiftingSpec(Strict):
    words: Strs = DEFAULT_WORDING.lifting
    unless: Strs = DEFAULT_WORDING.lifting_unless


class VocabularySpec(Strict):
    hazards: Annotated[dict[str, HazardSpec], BeforeValidator(_hazard_codes)] = Field(
        default_factory=dict, validate_default=True)
    colour: ColourSpec = ColourSpec()
    steps: StepsSpec | None = None
    lifting: LiftingSpec = LiftingSpec()
    expiry: ExpirySpec = ExpirySpec()
    channel_texts: Annotated[dict[str, list[str]], BeforeValidator(_channel_methods)] = Field(
        default_factory=dict)

    @model_validator(mode="after")
    def _one_owner(self) -> VocabularySpec:
        # A value claimed by two hazards would make the outcome depend on file order.
        for key, kind in (("event_codes", "event code"), ("keywords", "keyword")):
            owner: dict[str, str] = {}
            for code, spec in self.hazards.items():
                for v in getattr(spec, key):
                    other = owner.setdefault(normalise(v), code)
                    if other != code:
                        raise problem(f"{kind} {v!r} already belongs to {other}", "hazards", code, key)
        return self

    def vocabulary(self) -> Vocabulary:
        c = self.colour
        return build_vocabulary(
            [Hazard(code=code, zh=h.zh or code, event_codes=h.event_codes, keywords=h.keywords)
             for code, h in self.hazards.items()],
            colour_parameter_names=c.parameter_names, colour_values=c.values,
            colour_strip_prefixes=c.strip_prefixes, colour_strip_suffixes=c.strip_suffixes,
            colour_text=c.text, severity_colours=c.severity,
            expires_hours={code: h.expires_hours for code, h in self.hazards.items() if h.expires_hours is not None},
            default_expires_hours=self.expiry.default_hours, channel_methods=self.channel_texts)

    def wording(self) -> Wording:
        steps = ({normalise(k): v for k, v in self.steps.text.items()} if self.steps is not None
                 else DEFAULT_WORDING.step_text)
        return Wording(step_text=steps, lifting=tuple(normalise(w) for w in self.lifting.words),
                       lifting_unless=tuple(normalise(w) for w in self.lifting.unless))


def vocabulary_spec(path: Path | None = None) -> VocabularySpec:
    path = path or package_default("vocabulary.toml")
    return validate(VocabularySpec, read_toml(path, VocabularyError), str(path), VocabularyError)


def load_vocabulary(path: Path | None = None) -> Vocabulary:
    """Hazards and colours of vocabulary.toml at `path` (None: the package's default)."""
    return vocabulary_spec(path).vocabulary()


def load_wording(path: Path | None = None) -> Wording:
    """[steps.text] and [lifting] of vocabulary.toml at `path` (None: the package's default)."""
    return vocabulary_spec(path).wording()
