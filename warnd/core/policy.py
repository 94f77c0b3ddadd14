"""The dissemination policy (config/policy.toml): who is called, on which channels, how long
they have to confirm, and how the call escalates when they do not.

This is configuration a county edits, so loading is strict: an unknown key, role, ladder,
channel, colour or level is an error naming the file, the key path and the reason. A typo
must never silently drop an official from the call list. See docs/policy.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from warnd.core.domain import Action, Colour, Level, Step
from warnd.core.roles import Roles, load_roles
from warnd.paths import default_config

WILDCARD = "*"
DEFAULT_CHANNELS: tuple[str, ...] = ("sms",)


class PolicyError(ValueError):
    pass


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


# --------------------------------------------------------------------------- loading


class _Loader:
    def __init__(self, source: str, roles: Roles):
        self.source = source
        self.roles = roles
        self.channels: tuple[str, ...] = DEFAULT_CHANNELS

    def fail(self, path: str, reason: str) -> PolicyError:
        return PolicyError(
            f"{self.source}: {path}: {reason}" if path else f"{self.source}: {reason}"
        )

    def keys(
        self, table: Mapping[str, Any], path: str, allowed: set[str], required: set[str]
    ) -> None:
        for k in table:
            if k not in allowed:
                where = f"{path}.{k}" if path else k
                raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required):
            if k not in table:
                where = f"{path}.{k}" if path else k
                raise self.fail(where, "missing required key")

    def table(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table")
        return value

    def str_list(self, value: Any, path: str, allow_empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(path, "must be a list of non-empty strings")
        if not value and not allow_empty:
            raise self.fail(path, "must not be empty")
        out = tuple(v.strip() for v in value)
        if len(set(out)) != len(out):
            raise self.fail(path, "lists the same value twice")
        return out

    def positive(self, value: Any, path: str) -> float:
        # bool is an int in Python; `true` as a duration is certainly a mistake.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, "must be a number")
        if not value > 0:
            raise self.fail(path, "must be positive")
        return float(value)

    def colour(self, value: Any, path: str) -> Colour:
        try:
            return Colour(value)
        except ValueError:
            raise self.fail(
                path, f"unknown colour {value!r} (use {', '.join(c.value for c in Colour)})"
            ) from None

    def per_colour(
        self, value: Any, path: str, colours: frozenset[Colour], convert: Any
    ) -> dict[Colour, Any]:
        """One value for every colour, or a table {blue=..., red=...} covering `colours`."""
        if not isinstance(value, dict):
            v = convert(value, path)
            return dict.fromkeys(colours, v)
        out: dict[Colour, Any] = {}
        for k, v in value.items():
            c = self.colour(k, f"{path}.{k}")
            out[c] = convert(v, f"{path}.{k}")
        missing = [c.value for c in Colour if c in colours and c not in out]
        if missing:
            raise self.fail(path, f"no value for colour(s) {', '.join(missing)}")
        return out

    def channel_list(self, value: Any, path: str, allow_empty: bool = False) -> tuple[str, ...]:
        out = self.str_list(value, path, allow_empty=allow_empty)
        for i, ch in enumerate(out):
            if ch not in self.channels:
                raise self.fail(
                    f"{path}[{i}]",
                    f"unknown channel {ch!r} (declared channels: {', '.join(self.channels)})",
                )
        return out

    def load(self, raw: Mapping[str, Any]) -> Policy:
        self.keys(
            raw,
            "",
            {"forecast_lead_hours", "warning_lead_hours", "channels", "night", "ladders", "rules"},
            {"ladders", "rules"},
        )
        if "channels" in raw:
            self.channels = self.str_list(raw["channels"], "channels")
        forecast = timedelta(
            hours=self.positive(raw.get("forecast_lead_hours", 6), "forecast_lead_hours")
        )
        warning = timedelta(
            hours=self.positive(raw.get("warning_lead_hours", 3), "warning_lead_hours")
        )
        if warning >= forecast:
            raise self.fail("warning_lead_hours", "must be shorter than forecast_lead_hours")

        ladders_raw = self.table(raw["ladders"], "ladders")
        if not ladders_raw:
            raise self.fail("ladders", "define at least one ladder")
        ladders = {name: self.ladder(name, spec) for name, spec in ladders_raw.items()}

        rules_raw = raw["rules"]
        if not isinstance(rules_raw, list) or not rules_raw:
            raise self.fail("rules", "must be a non-empty array of tables ([[rules]])")
        rules = tuple(self.rule(spec, f"rules[{i}]", ladders) for i, spec in enumerate(rules_raw))
        return Policy(
            ladders=ladders,
            rules=rules,
            channels=self.channels,
            forecast_lead=forecast,
            warning_lead=warning,
            source=self.source,
            night=self.night(raw["night"]) if "night" in raw else None,
        )

    def night(self, spec: Any) -> Night:
        t = self.table(spec, "night")
        self.keys(t, "night", {"start", "end", "channels", "utc_offset_hours"}, {"start", "end", "channels"})

        def clock(key: str) -> time:
            v = t[key]
            try:
                hh, mm = (int(x) for x in str(v).split(":"))
                return time(hh, mm)
            except ValueError:
                raise self.fail(f"night.{key}", f"must be a time of day like \"22:00\", not {v!r}") from None

        start, end = clock("start"), clock("end")
        if start == end:
            raise self.fail("night.end", "must differ from night.start")
        offset = t.get("utc_offset_hours", 8)
        if isinstance(offset, bool) or not isinstance(offset, int | float) or not -12 <= offset <= 14:
            raise self.fail("night.utc_offset_hours", "must be a number of hours between -12 and 14")
        return Night(start, end, self.channel_list(t["channels"], "night.channels"), timedelta(hours=offset))

    def ladder(self, name: str, spec: Any) -> Ladder:
        path = f"ladders.{name}"
        t = self.table(spec, path)
        self.keys(t, path, {"rungs"}, {"rungs"})
        rungs_raw = t["rungs"]
        if not isinstance(rungs_raw, list) or not rungs_raw:
            raise self.fail(f"{path}.rungs", "must be a non-empty list of rungs")
        rungs = []
        for i, r in enumerate(rungs_raw):
            rp = f"{path}.rungs[{i}]"
            rt = self.table(r, rp)
            self.keys(rt, rp, {"action", "wait_minutes", "channels"}, {"action"})
            try:
                action = Action(rt["action"])
            except ValueError:
                raise self.fail(
                    f"{rp}.action",
                    f"unknown action {rt['action']!r} (use {', '.join(a.value for a in Action)})",
                ) from None
            last = i == len(rungs_raw) - 1
            if action is Action.DUTY_ROOM:
                if not last:
                    raise self.fail(f"{rp}.action", "duty_room may only be the last rung")
                if "wait_minutes" in rt:
                    raise self.fail(
                        f"{rp}.wait_minutes", "the duty_room rung is final and has no wait"
                    )
                wait = timedelta(0)
            else:
                if last:
                    raise self.fail(f"{rp}.action", "the last rung must be duty_room")
                if "wait_minutes" not in rt:
                    raise self.fail(f"{rp}.wait_minutes", "missing required key")
                wait = timedelta(minutes=self.positive(rt["wait_minutes"], f"{rp}.wait_minutes"))
            channels = (
                self.channel_list(rt["channels"], f"{rp}.channels") if "channels" in rt else ()
            )
            rungs.append(Rung(action=action, wait=wait, channels=channels))
        return Ladder(name=name, rungs=tuple(rungs))

    def rule(self, spec: Any, path: str, ladders: Mapping[str, Ladder]) -> Rule:
        t = self.table(spec, path)
        self.keys(t, path, {"hazards", "step", "targets"}, {"hazards", "step", "targets"})
        hz = t["hazards"]
        hazards: frozenset[str] | None
        if hz == WILDCARD:
            hazards = None
        else:
            codes = self.str_list(hz, f"{path}.hazards")
            if WILDCARD in codes:
                raise self.fail(
                    f"{path}.hazards", 'write hazards = "*" on its own, not inside a list'
                )
            hazards = frozenset(c.casefold() for c in codes)
        try:
            step = Step(t["step"])
        except ValueError:
            raise self.fail(
                f"{path}.step",
                f"unknown step {t['step']!r} (use {', '.join(s.value for s in Step)})",
            ) from None
        targets_raw = t["targets"]
        if not isinstance(targets_raw, list) or not targets_raw:
            raise self.fail(
                f"{path}.targets", "must be a non-empty array of tables ([[rules.targets]])"
            )
        targets = tuple(
            self.target(s, f"{path}.targets[{i}]", ladders) for i, s in enumerate(targets_raw)
        )
        return Rule(hazards=hazards, step=step, targets=targets)

    def target(self, spec: Any, path: str, ladders: Mapping[str, Ladder]) -> TargetRule:
        t = self.table(spec, path)
        allowed = {
            "level",
            "roles",
            "optional_roles",
            "colours",
            "channels",
            "confirm_minutes",
            "ladder",
        }
        self.keys(t, path, allowed, {"level", "roles", "confirm_minutes", "ladder"})
        try:
            level = Level(t["level"])
        except ValueError:
            raise self.fail(
                f"{path}.level",
                f"unknown level {t['level']!r} (use {', '.join(lv.value for lv in Level)})",
            ) from None

        if "colours" in t:
            cl = self.str_list(t["colours"], f"{path}.colours")
            colours = frozenset(self.colour(c, f"{path}.colours[{i}]") for i, c in enumerate(cl))
        else:
            colours = frozenset(Colour)

        required = self.str_list(t["roles"], f"{path}.roles", allow_empty="optional_roles" in t)
        optional = (
            self.str_list(t["optional_roles"], f"{path}.optional_roles")
            if "optional_roles" in t
            else ()
        )
        if not required and not optional:
            raise self.fail(f"{path}.roles", "name at least one role")
        for key, codes in (("roles", required), ("optional_roles", optional)):
            for i, code in enumerate(codes):
                kp = f"{path}.{key}[{i}]"
                if code not in self.roles:
                    raise self.fail(kp, f"unknown role {code!r} (not in roles.toml)")
                if self.roles[code].level is not level:
                    raise self.fail(
                        kp,
                        f"role {code!r} sits at level {self.roles[code].level.value!r} in roles.toml, not {level.value!r}",
                    )
        both = set(required) & set(optional)
        if both:
            raise self.fail(
                f"{path}.optional_roles",
                f"{sorted(both)} also listed in roles; list each role once",
            )

        channels = (
            self.channel_list(t["channels"], f"{path}.channels")
            if "channels" in t
            else self.channels
        )
        window = self.per_colour(
            t["confirm_minutes"],
            f"{path}.confirm_minutes",
            colours,
            lambda v, p: timedelta(minutes=self.positive(v, p)),
        )

        def ladder_name(v: Any, p: str) -> str:
            if not isinstance(v, str) or v not in ladders:
                raise self.fail(p, f"unknown ladder {v!r} (defined: {', '.join(sorted(ladders))})")
            return v

        ladder = self.per_colour(t["ladder"], f"{path}.ladder", colours, ladder_name)
        return TargetRule(
            level=level,
            roles=required,
            optional_roles=optional,
            channels=channels,
            confirm_window=window,
            ladder=ladder,
            colours=colours,
        )


def parse_policy(text: str, roles: Roles, source: str = "<policy>") -> Policy:
    """Parse policy TOML text (load_policy without the file read; handy for tests)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{source}: not valid TOML: {e}") from e
    loader = _Loader(source, roles)
    try:
        return loader.load(raw)
    except PolicyError:
        raise
    except ValueError as e:  # a dataclass invariant (e.g. Ladder) the loader did not pre-check
        raise PolicyError(f"{source}: {e}") from e


def load_policy(path: Path | None = None, roles: Roles | None = None) -> Policy:
    path = path or default_config("policy.toml")
    roles = roles if roles is not None else load_roles()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e}") from e
    return parse_policy(text, roles, source=str(path))


__all__ = [
    "Ladder",
    "Night",
    "Policy",
    "PolicyError",
    "Rule",
    "Rung",
    "Target",
    "TargetRule",
    "load_policy",
    "parse_policy",
    "step_from_lead",
]
