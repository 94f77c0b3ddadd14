"""sources.toml → warnd.feeds.sources.Sources (format: docs/feeds.md and the example
config/sources.toml). Secrets written `env:NAME` are read from the environment here."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from warnd.config.errors import SourcesError
from warnd.config.validation import Strict, Strs, context, enum_check, problem, read_toml, validate
from warnd.core.domain import Colour, Step
from warnd.feeds.sources import Source, SourceMapping, Sources

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_STEP_WORDS = {"6": Step.FORECAST, "3": Step.WARNING, "1": Step.IMMINENT}


def _from_env(value: str, info: ValidationInfo) -> str:
    name = value[4:]
    env: Mapping[str, str] = context(info).get("env", os.environ)
    got = env.get(name, "")
    if not got:
        raise problem(f"environment variable {name} is not set")
    return got


def _secret(v: Any, info: ValidationInfo) -> str:
    if not isinstance(v, str):
        raise problem("must be a string")
    if v.startswith("env:"):
        return _from_env(v, info)
    if v and len(v) < 16:
        raise problem("secrets must be at least 16 characters")
    return v


def _env_or_text(v: Any, info: ValidationInfo) -> str:
    if not isinstance(v, str):
        raise problem("must be a string")
    return _from_env(v, info) if v.startswith("env:") else v


def _positive(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise problem("must be a positive number")
    return float(v)


def _step(v: Any) -> Step:
    try:
        return _STEP_WORDS.get(str(v)) or Step(str(v))
    except ValueError:
        raise problem("must be forecast/warning/imminent (or 6/3/1)") from None


def _hazard(v: Any, info: ValidationInfo) -> str:
    if not isinstance(v, str):
        raise problem("must be a hazard code")
    known = context(info).get("known_hazards")
    if known is not None and v not in known:
        raise problem(f"{v!r} is not a hazard of the vocabulary")
    return v


Secret = Annotated[str, BeforeValidator(_secret)]
EnvOrText = Annotated[str, BeforeValidator(_env_or_text)]
Seconds = Annotated[float, BeforeValidator(_positive)]
HazardCode = Annotated[str, BeforeValidator(_hazard)]


class MappingSpec(Strict):
    hazard: HazardCode | None = None
    colour: Annotated[Colour, BeforeValidator(enum_check(Colour, "must be blue/yellow/orange/red"))] | None = None
    step: Annotated[Step, BeforeValidator(_step)] | None = None
    event_codes: dict[str, HazardCode] = Field(default_factory=dict)
    code_scheme: Literal["national", "type_level"] = "national"
    level_scheme: Literal["none", "blue_first", "red_first"] = "none"

    @field_validator("event_codes", mode="before")
    @classmethod
    def _codes(cls, v: Any) -> Any:
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
            raise problem("must map strings to hazard codes")
        return v


class SourceSpec(Strict):
    kind: Literal["cap_push", "cap_poll", "telemetry"]
    senders: Strs = ()
    token: Secret = ""
    secret: Secret = ""
    url: str = ""  # cap_poll
    interval_seconds: Seconds = 60.0
    max_backoff_seconds: Seconds = 1800.0
    timeout_seconds: Seconds = 30.0
    headers: dict[str, EnvOrText] = Field(default_factory=dict)
    stations: Strs = ()
    mapping: MappingSpec = MappingSpec()
    enabled: bool = True
    mqtt_url: EnvOrText = ""
    topic: str = "warnd/telemetry/+"

    @model_validator(mode="after")
    def _kind_needs(self) -> SourceSpec:
        if self.kind in ("cap_push", "cap_poll") and not self.senders:
            raise problem("a CAP source needs a non-empty senders allow-list", "senders")
        if self.kind == "cap_push" and not (self.token or self.secret):
            raise problem("a push source needs a token or a secret")
        if self.kind == "cap_poll" and not self.url.startswith(("http://", "https://")):
            raise problem("a poll source needs an http(s) url", "url")
        return self

    def build(self, name: str) -> Source:
        m = self.mapping
        return Source(
            name=name, kind=self.kind, senders=frozenset(self.senders), token=self.token,
            secret=self.secret, url=self.url, interval_seconds=self.interval_seconds,
            max_backoff_seconds=self.max_backoff_seconds, timeout_seconds=self.timeout_seconds,
            headers=dict(self.headers), stations=frozenset(self.stations), mqtt_url=self.mqtt_url,
            topic=self.topic, enabled=self.enabled,
            mapping=SourceMapping(hazard=m.hazard, colour=m.colour, step=m.step, event_codes=dict(m.event_codes),
                                  code_scheme=m.code_scheme, level_scheme=m.level_scheme),
        )


def _names(v: Any) -> Any:
    if isinstance(v, dict):
        for name in v:
            if not _NAME_RE.fullmatch(name):
                raise problem("source names are lower-case letters, digits, - and _", name)
    return v


class SourcesSpec(Strict):
    sources: Annotated[dict[str, SourceSpec], BeforeValidator(_names)] = Field(default_factory=dict)

    def build(self) -> Sources:
        return Sources({name: spec.build(name) for name, spec in self.sources.items()})


def parse_sources(raw: Any, env: Mapping[str, str] | None = None,
                 known_hazards: tuple[str, ...] | None = None, source: str = "<sources>") -> Sources:
    """Sources from a parsed sources.toml; `known_hazards` (the vocabulary's codes) checks
    the mappings."""
    ctx = {"env": os.environ if env is None else env, "known_hazards": known_hazards}
    return validate(SourcesSpec, raw, source, SourcesError, context=ctx).build()


def load_sources(path: Path, env: Mapping[str, str] | None = None,
                 known_hazards: tuple[str, ...] | None = None) -> Sources:
    return parse_sources(read_toml(path, SourcesError), env, known_hazards, str(path))
