"""policy.toml → warnd.core.policy.Policy (format: docs/policy.md).

The models below are the file's schema. Names the file refers to — channels it declares,
ladders it defines, roles from roles.toml — are checked through the validation context,
which the top-level model fills before its parts are validated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from warnd.config.errors import PolicyError
from warnd.config.files import package_default
from warnd.config.roles import load_roles
from warnd.config.validation import (
    Names,
    NamesOrNone,
    Positive,
    Strict,
    context,
    enum_check,
    names,
    parse_toml,
    positive,
    problem,
    validate,
)
from warnd.core.domain import Action, Colour, Level, Step
from warnd.core.policy import (
    DEFAULT_CHANNELS,
    WILDCARD,
    Ladder,
    Night,
    Policy,
    Rule,
    Rung,
    TargetRule,
)
from warnd.core.public_policy import ALL_KINDS, DEFAULT_PUBLIC_RULES, PublicRule
from warnd.core.roles import Roles
from warnd.core.templates import MAX_INSTRUCTION

colour_of = enum_check(Colour)
ActionT = Annotated[Action, BeforeValidator(enum_check(Action))]
ColourT = Annotated[Colour, BeforeValidator(colour_of)]
LevelT = Annotated[Level, BeforeValidator(enum_check(Level))]
StepT = Annotated[Step, BeforeValidator(enum_check(Step))]


def _channels(v: Any, info: ValidationInfo) -> tuple[str, ...]:
    out = names(v)
    declared = context(info).get("channels", DEFAULT_CHANNELS)
    for i, ch in enumerate(out):
        if ch not in declared:
            raise problem(f"unknown channel {ch!r} (declared channels: {', '.join(declared)})", i)
    return tuple(out)


Channels = Annotated[tuple[str, ...], BeforeValidator(_channels)]


def _non_empty_list(message: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, list) or not v:
            raise problem(message)
        return v

    return check


class RungSpec(Strict):
    action: ActionT
    wait_minutes: Positive | None = None
    channels: Channels = ()


class LadderSpec(Strict):
    rungs: Annotated[list[RungSpec], BeforeValidator(_non_empty_list("must be a non-empty list of rungs"))]

    @model_validator(mode="after")
    def _shape(self) -> LadderSpec:
        # Every ladder ends in the duty room, so a silent call always reaches a human.
        last = len(self.rungs) - 1
        for i, r in enumerate(self.rungs):
            if r.action is Action.DUTY_ROOM:
                if i != last:
                    raise problem("duty_room may only be the last rung", "rungs", i, "action")
                if r.wait_minutes is not None:
                    raise problem("the duty_room rung is final and has no wait", "rungs", i, "wait_minutes")
            elif i == last:
                raise problem("the last rung must be duty_room", "rungs", i, "action")
            elif r.wait_minutes is None:
                raise problem("missing required key", "rungs", i, "wait_minutes")
        return self

    def build(self, name: str) -> Ladder:
        return Ladder(name=name, rungs=tuple(
            Rung(action=r.action, wait=timedelta(minutes=r.wait_minutes or 0), channels=r.channels)
            for r in self.rungs))


def _hazards(v: Any) -> frozenset[str] | None:
    if v == WILDCARD:
        return None
    codes = names(v)
    if WILDCARD in codes:
        raise problem('write hazards = "*" on its own, not inside a list')
    return frozenset(c.casefold() for c in codes)


def _time_of_day(v: Any) -> time:
    try:
        hh, mm = (int(x) for x in str(v).split(":"))
        return time(hh, mm)
    except ValueError:
        raise problem(f'must be a time of day like "22:00", not {v!r}') from None


def _utc_offset(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not -12 <= v <= 14:
        raise problem("must be a number of hours between -12 and 14")
    return float(v)


class NightSpec(Strict):
    start: Annotated[time, BeforeValidator(_time_of_day)]
    end: Annotated[time, BeforeValidator(_time_of_day)]
    channels: Channels
    utc_offset_hours: Annotated[float, BeforeValidator(_utc_offset)] = 8

    @model_validator(mode="after")
    def _differ(self) -> NightSpec:
        if self.start == self.end:
            raise problem("must differ from night.start", "end")
        return self

    def build(self) -> Night:
        return Night(self.start, self.end, self.channels, timedelta(hours=self.utc_offset_hours))


class TargetSpec(Strict):
    level: LevelT
    roles: NamesOrNone
    optional_roles: Names = ()
    colours: Annotated[tuple[ColourT, ...], BeforeValidator(names)] = tuple(Colour)
    channels: Channels | None = None
    confirm_minutes: Any
    ladder: Any

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TargetSpec:
        if not self.roles and "optional_roles" not in self.model_fields_set:
            raise problem("must not be empty", "roles")
        if not self.roles and not self.optional_roles:
            raise problem("name at least one role", "roles")
        roles: Roles | None = context(info).get("roles")
        for key, codes in (("roles", self.roles), ("optional_roles", self.optional_roles)):
            for i, code in enumerate(codes):
                if roles is None:
                    continue
                if code not in roles:
                    raise problem(f"unknown role {code!r} (not in roles.toml)", key, i)
                if roles[code].level is not self.level:
                    raise problem(f"role {code!r} sits at level {roles[code].level.value!r} in roles.toml, "
                                  f"not {self.level.value!r}", key, i)
        both = set(self.roles) & set(self.optional_roles)
        if both:
            raise problem(f"{sorted(both)} also listed in roles; list each role once", "optional_roles")
        self._per_colour("confirm_minutes", positive)
        ladders = context(info).get("ladders", set())

        def ladder_name(v: Any) -> str:
            if not isinstance(v, str) or v not in ladders:
                raise problem(f"unknown ladder {v!r} (defined: {', '.join(sorted(ladders))})")
            return v

        self._per_colour("ladder", ladder_name)
        return self

    def _per_colour(self, key: str, convert: Callable[[Any], Any]) -> dict[Colour, Any]:
        """One value for every colour, or a table {blue = …, red = …} covering `colours`."""
        value = getattr(self, key)
        if not isinstance(value, dict):
            return dict.fromkeys(self.colours, _blame(convert, value, key))
        out: dict[Colour, Any] = {}
        for k, v in value.items():
            c = _blame(colour_of, k, key, k)
            out[c] = _blame(convert, v, key, k)
        missing = [c.value for c in Colour if c in self.colours and c not in out]
        if missing:
            raise problem(f"no value for colour(s) {', '.join(missing)}", key)
        return out

    def build(self, default_channels: tuple[str, ...]) -> TargetRule:
        return TargetRule(
            level=self.level,
            roles=self.roles,
            optional_roles=self.optional_roles,
            channels=self.channels if self.channels is not None else default_channels,
            confirm_window={c: timedelta(minutes=m) for c, m in
                            self._per_colour("confirm_minutes", positive).items()},
            ladder=self._per_colour("ladder", str),
            colours=frozenset(self.colours),
        )


def _blame(convert: Callable[[Any], Any], value: Any, *at: str) -> Any:
    """`convert(value)`, its error moved to the key path `at` below the target."""
    try:
        return convert(value)
    except PydanticCustomError as e:
        ctx = e.context or {}
        raise problem(str(ctx.get("reason", e.message())), *at, *ctx.get("at", ())) from None


def _guidance_text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise problem("must be a non-empty string")
    if len(v.strip()) > MAX_INSTRUCTION:
        raise problem(f"must be at most {MAX_INSTRUCTION} characters (it goes into every SMS), not {len(v.strip())}")
    return v.strip()


GuidanceText = Annotated[str, BeforeValidator(_guidance_text)]


class RuleSpec(Strict):
    hazards: Annotated[frozenset[str] | None, BeforeValidator(_hazards)]
    step: StepT
    targets: Annotated[list[TargetSpec], BeforeValidator(_non_empty_list(
        "must be a non-empty array of tables ([[rules.targets]])"))]


def _kinds(v: Any) -> tuple[str, ...]:
    out = names(v)
    for i, k in enumerate(out):
        if k not in ALL_KINDS:
            raise problem(f"unknown list kind {k!r} (use {', '.join(ALL_KINDS)})", i)
    return tuple(out)


class PublicRuleSpec(Strict):
    """[[public]]: when the public is reached (docs/public.md)."""

    name: str = ""
    hazards: Annotated[frozenset[str] | None, BeforeValidator(_hazards)] = None
    steps: list[StepT]
    colours: list[ColourT] = Field(default_factory=lambda: list(Colour))
    kinds: Annotated[tuple[str, ...], BeforeValidator(_kinds)] = ALL_KINDS
    channel: str = "sms"
    template: str = "public"

    def build(self, i: int) -> PublicRule:
        return PublicRule(self.name or f"public[{i}]", frozenset(self.steps), frozenset(self.colours), self.hazards,
                          self.kinds, self.channel, self.template)


class PolicySpec(Strict):
    forecast_lead_hours: Positive = 6
    warning_lead_hours: Positive = 3
    channels: Names = DEFAULT_CHANNELS
    ladders: dict[str, LadderSpec]
    rules: Annotated[list[RuleSpec], BeforeValidator(_non_empty_list(
        "must be a non-empty array of tables ([[rules]])"))]
    night: NightSpec | None = None
    guidance: dict[str, dict[StepT, GuidanceText]] = Field(default_factory=dict)
    public: list[PublicRuleSpec] | None = None  # None: DEFAULT_PUBLIC_RULES; [] reaches no public

    @model_validator(mode="before")
    @classmethod
    def _declare(cls, data: Any, info: ValidationInfo) -> Any:
        """What the parts refer to: the declared channels and the ladders' names."""
        ctx = context(info)
        if isinstance(data, dict):
            try:
                ctx["channels"] = names(data.get("channels", list(DEFAULT_CHANNELS)))
            except ValueError:
                ctx["channels"] = DEFAULT_CHANNELS  # reported by the field itself
            ladders = data.get("ladders")
            ctx["ladders"] = set(ladders) if isinstance(ladders, dict) else set()
        return data

    @field_validator("ladders", mode="before")
    @classmethod
    def _some_ladder(cls, v: Any) -> Any:
        if isinstance(v, dict) and not v:
            raise problem("define at least one ladder")
        return v

    @model_validator(mode="after")
    def _leads(self) -> PolicySpec:
        if self.warning_lead_hours >= self.forecast_lead_hours:
            raise problem("must be shorter than forecast_lead_hours", "warning_lead_hours")
        return self

    def build(self, source: str) -> Policy:
        return Policy(
            ladders={name: spec.build(name) for name, spec in self.ladders.items()},
            rules=tuple(Rule(hazards=r.hazards, step=r.step,
                             targets=tuple(t.build(self.channels) for t in r.targets))
                        for r in self.rules),
            channels=self.channels,
            forecast_lead=timedelta(hours=self.forecast_lead_hours),
            warning_lead=timedelta(hours=self.warning_lead_hours),
            source=source,
            night=self.night.build() if self.night is not None else None,
            guidance={h.strip().casefold(): dict(steps) for h, steps in self.guidance.items()},
            public=(DEFAULT_PUBLIC_RULES if self.public is None
                    else tuple(r.build(i) for i, r in enumerate(self.public))),
        )


def policy_from(raw: Mapping[str, Any], roles: Roles, source: str = "<policy>") -> Policy:
    spec = validate(PolicySpec, raw, source, PolicyError, context={"roles": roles})
    try:
        return spec.build(source)
    except ValueError as e:  # a core invariant (e.g. Ladder) the schema did not pre-check
        raise PolicyError(f"{source}: {e}") from None


def parse_policy(text: str, roles: Roles, source: str = "<policy>") -> Policy:
    """Policy TOML text (load_policy without the file read; handy for tests)."""
    return policy_from(parse_toml(text, source, PolicyError), roles, source)


def load_policy(path: Path | None = None, roles: Roles | None = None) -> Policy:
    """The policy file at `path` (None: the package's default), roles from `roles`
    (None: the package's default roles)."""
    path = path or package_default("policy.toml")
    roles = roles if roles is not None else load_roles()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_policy(text, roles, source=str(path))
