"""The dissemination policy: who is called, on which channels, how long they have to
confirm, and how the call escalates when they do not (docs/policy.md).

The values only; warnd.config.policy reads and checks policy.toml into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from warnd.core.domain import Action, Colour, Level, Step
from warnd.core.public_policy import DEFAULT_PUBLIC_RULES, PublicRule

WILDCARD = "*"
DEFAULT_CHANNELS: tuple[str, ...] = ("sms",)


@dataclass(frozen=True)
class Rung:
    """One escalation step. `wait` is the time after this rung fires before the next one
    fires (zero and unused for DUTY_ROOM). Empty `channels` means: use the call's own
    channels."""

    action: Action
    wait: timedelta
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Night:
    """叫醒: between `start` and `end` (local time, may span midnight) every first send also
    goes out on `channels` (a voice call wakes people; a text does not)."""

    start: time
    end: time
    channels: tuple[str, ...]
    utc_offset: timedelta = timedelta(hours=8)  # Beijing time

    def covers(self, at: datetime) -> bool:
        local = (at.astimezone(UTC) + self.utc_offset).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Ladder:
    name: str
    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        # The state machine relies on this shape: every ladder ends in the duty room, so a
        # silent call always ends up in front of a human.
        if not self.rungs:
            raise ValueError(f"ladder {self.name!r} has no rungs")
        if self.rungs[-1].action is not Action.DUTY_ROOM:
            raise ValueError(f"ladder {self.name!r} must end with a duty_room rung")
        if any(r.action is Action.DUTY_ROOM for r in self.rungs[:-1]):
            raise ValueError(f"ladder {self.name!r}: duty_room may only be the last rung")
        for r in self.rungs[:-1]:
            if r.wait <= timedelta(0):
                raise ValueError(
                    f"ladder {self.name!r}: every rung before duty_room needs a positive wait"
                )


@dataclass(frozen=True)
class Target:
    """A resolved target: what Policy.targets returns for one hazard × colour × step."""

    level: Level
    roles: tuple[str, ...]  # every role called, required first, in file order
    optional_roles: frozenset[str]  # subset of roles: nobody holding it is not a coverage gap
    channels: tuple[str, ...]
    confirm_window: timedelta
    ladder: str


@dataclass(frozen=True)
class TargetRule:
    """A target as written in the file, before the colour is known."""

    level: Level
    roles: tuple[str, ...]
    optional_roles: tuple[str, ...]
    channels: tuple[str, ...]
    confirm_window: Mapping[Colour, timedelta]
    ladder: Mapping[Colour, str]
    colours: frozenset[Colour]  # colours this target applies to (all four when not restricted)

    def resolve(self, colour: Colour) -> Target:
        return Target(
            level=self.level,
            roles=self.roles + self.optional_roles,
            optional_roles=frozenset(self.optional_roles),
            channels=self.channels,
            confirm_window=self.confirm_window[colour],
            ladder=self.ladder[colour],
        )


@dataclass(frozen=True)
class Rule:
    hazards: frozenset[str] | None  # None: the wildcard "*"; codes are casefolded
    step: Step
    targets: tuple[TargetRule, ...]


@dataclass(frozen=True)
class Policy:
    ladders: dict[str, Ladder]
    rules: tuple[Rule, ...] = ()
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    forecast_lead: timedelta = timedelta(hours=6)
    warning_lead: timedelta = timedelta(hours=3)
    source: str = "<policy>"
    night: Night | None = None
    # 防御指引: hazard code ("*" for any) → step → what people must do, used when a warning
    # carries no <instruction>.
    guidance: Mapping[str, Mapping[Step, str]] = field(default_factory=dict)

    def guidance_for(self, hazard: str, step: Step | str) -> str:
        """The 防御指引 for `hazard` at `step`: the hazard's own, else the "*" one, else ""."""
        step = Step(step)
        own = self.guidance.get(hazard.strip().casefold(), {})
        return own.get(step) or self.guidance.get(WILDCARD, {}).get(step, "")
    public: tuple[PublicRule, ...] = DEFAULT_PUBLIC_RULES  # when the public is reached (warnd.public)

    def with_night_channels(self, channels: tuple[str, ...], at: datetime) -> tuple[str, ...]:
        """`channels` for a first send at `at`: at night the night channels come first."""
        if self.night is None or not self.night.covers(at):
            return channels
        return self.night.channels + tuple(c for c in channels if c not in self.night.channels)

    def targets(self, hazard: str, colour: Colour, step: Step) -> tuple[Target, ...]:
        """Targets for one alert step, in file order.

        Precedence: if any rule for this step names the hazard explicitly, exactly those
        rules apply and every "*" rule for the step is ignored; otherwise all "*" rules for
        the step apply. Several matching rules of the same kind are all applied.
        """
        h = hazard.strip().casefold()
        for_step = [r for r in self.rules if r.step is step]
        specific = [r for r in for_step if r.hazards is not None and h in r.hazards]
        chosen = specific or [r for r in for_step if r.hazards is None]
        return tuple(t.resolve(colour) for r in chosen for t in r.targets if colour in t.colours)


def step_from_lead(sent: datetime, onset: datetime | None, policy: Policy) -> Step:
    """The 631 step from lead time (onset − sent). No onset means it is happening now."""
    if onset is None:
        return Step.IMMINENT
    lead = onset - sent
    if lead >= policy.forecast_lead:
        return Step.FORECAST
    if lead >= policy.warning_lead:
        return Step.WARNING
    return Step.IMMINENT


__all__ = [
    "Ladder",
    "Night",
    "Policy",
    "Rule",
    "Rung",
    "Target",
    "TargetRule",
    "step_from_lead",
]
