"""Is the county ready for a storm? The roster checked against the policy, the loudspeaker fleet
and the feed sources. Pure functions: the caller loads the facts (warnd.views.readiness),
these decide, and the result is plain data the CLI (`warnd check`) and the console both use.

The policy is asked exactly as `plan_alert` would ask it, for every hazard × colour × step, so
a role the policy requires anywhere is checked everywhere it could be called.

Severity: an ERROR means a warning would reach nobody somewhere (a region where nobody holds
any of the roles the policy requires there, no county 值班员 for duty-room handovers); a
WARNING is a hole the duty room should close before the storm; INFO is worth knowing.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from warnd.core.domain import Action, Colour, Level, PersonView, RegionView, Step
from warnd.core.phones import classify_stored
from warnd.core.planner import DUTY_OFFICER_ROLE, PeopleIndex
from warnd.core.policy import Policy

# A hazard no rule names: asking the policy for it yields the "*" rules.
_ANY_OTHER_HAZARD = "\x00any-other-hazard"
TELEMETRY_STALE_AFTER = timedelta(hours=1)  # gauges report every few minutes


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One hole. `check` names the check that found it; `code` what it is (stable, for
    machines). The other fields say where and who; the words for people come from the
    formatter (warnd.views.readiness)."""

    check: str  # roles | duty_room | deputies | phones | speakers | sources | (providers)
    code: str
    severity: Severity
    region_code: str | None = None
    roles: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    person_id: int | None = None
    person_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    detail: str = ""


@dataclass(frozen=True)
class SpeakerFacts:
    device_id: str
    region_code: str
    online: bool | None  # None: never heard from
    last_seen_at: datetime | None


@dataclass(frozen=True)
class SourceFacts:
    """A feed source: its configuration (kind None: a feed_state row no configuration names)
    and its feed_state row (all None: never polled or pushed)."""

    name: str
    kind: str | None = None  # cap_push | cap_poll | telemetry
    interval_seconds: float | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0


@dataclass(frozen=True)
class ReadinessInput:
    regions: Mapping[str, RegionView]
    people: Sequence[PersonView]  # active people
    policy: Policy
    now: datetime
    speakers: Sequence[SpeakerFacts] = ()  # active speakers
    sources: Sequence[SourceFacts] = ()
    speaker_stale_after: timedelta = timedelta(seconds=180)
    index: PeopleIndex = field(default=None)  # type: ignore[assignment]  # built when not given

    def __post_init__(self) -> None:
        if self.index is None:
            object.__setattr__(self, "index", PeopleIndex.build(self.people))


@dataclass(frozen=True)
class Readiness:
    checked_at: datetime
    findings: tuple[Finding, ...]
    counts: Mapping[str, int]  # what was checked: regions per level, people, speakers, sources

    def of(self, severity: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is severity)

    @property
    def status(self) -> str:
        """ready | warnings | errors."""
        if self.of(Severity.ERROR):
            return "errors"
        return "warnings" if self.of(Severity.WARNING) else "ready"

    @property
    def exit_code(self) -> int:
        """For scripts: 0 ready, 1 warnings only, 2 errors."""
        return {"ready": 0, "warnings": 1, "errors": 2}[self.status]


Check = Callable[[ReadinessInput], list[Finding]]


# --- what the policy asks for ------------------------------------------------------------------


@dataclass(frozen=True)
class Obligations:
    """Per level: the roles required at each step (in policy order), and every (role, ladder)
    the policy calls."""

    required: Mapping[Level, Mapping[Step, tuple[str, ...]]]
    called: Mapping[tuple[Level, str], frozenset[str]]  # (level, role) → ladders it is called with

    def required_at(self, level: Level) -> tuple[str, ...]:
        by_step = self.required.get(level, {})
        return tuple(dict.fromkeys(r for step in Step for r in by_step.get(step, ())))


def obligations(policy: Policy) -> Obligations:
    hazards = sorted({h for r in policy.rules if r.hazards is not None for h in r.hazards})
    required: dict[Level, dict[Step, dict[str, None]]] = defaultdict(lambda: defaultdict(dict))
    called: dict[tuple[Level, str], set[str]] = defaultdict(set)
    for hazard in [*hazards, _ANY_OTHER_HAZARD]:
        for colour in Colour:
            for step in Step:
                for t in policy.targets(hazard, colour, step):
                    for role in t.roles:
                        called[(t.level, role)].add(t.ladder)
                        if role not in t.optional_roles:
                            required[t.level][step][role] = None
    return Obligations(
        required={lv: {st: tuple(rs) for st, rs in by_step.items()} for lv, by_step in required.items()},
        called={k: frozenset(v) for k, v in called.items()},
    )


# --- checks ------------------------------------------------------------------------------------


def check_regions(inp: ReadinessInput) -> list[Finding]:
    if not inp.regions:
        return [Finding("roles", "no_regions", Severity.ERROR)]
    return []


def check_required_roles(inp: ReadinessInput) -> list[Finding]:
    """Per region: roles the policy requires there that nobody holds, with the steps that call
    them. A region where none of them is held — a village with no officials on the list —
    is an error: warnings there would find no responsible person."""
    ob = obligations(inp.policy)
    out: list[Finding] = []
    for code in sorted(inp.regions):
        level = inp.regions[code].level
        required = ob.required_at(level)
        if not required:
            continue
        missing = [r for r in required if not inp.index.at(code, r)]
        steps = {r: tuple(s for s in Step if r in ob.required[level].get(s, ())) for r in missing}
        if len(missing) == len(required):
            every = tuple(s for s in Step if ob.required[level].get(s))
            out.append(Finding("roles", "nobody_to_call", Severity.ERROR, region_code=code,
                               roles=tuple(missing), steps=every))
            continue
        for role in missing:
            out.append(Finding("roles", "role_unfilled", Severity.WARNING, region_code=code,
                               roles=(role,), steps=steps[role]))
    return out


def root_codes(regions: Mapping[str, RegionView]) -> list[str]:
    return sorted(c for c, r in regions.items() if r.parent_code is None or r.parent_code not in regions)


def check_duty_room(inp: ReadinessInput) -> list[Finding]:
    """The duty room (值班室) receives every call the ladder could not close, and coverage-gap
    notices. Without a county 值班员 they reach nobody."""
    out: list[Finding] = []
    for root in root_codes(inp.regions):
        duty = inp.index.at(root, DUTY_OFFICER_ROLE)
        if not duty:
            out.append(Finding("duty_room", "no_duty_officer", Severity.ERROR, region_code=root,
                               roles=(DUTY_OFFICER_ROLE,)))
        elif not any(p.phone for p in duty):
            out.append(Finding("duty_room", "duty_room_no_mobile", Severity.WARNING, region_code=root,
                               roles=(DUTY_OFFICER_ROLE,), detail="、".join(p.name for p in duty)))
    return out


def check_deputies(inp: ReadinessInput) -> list[Finding]:
    """Officials the policy calls on a ladder with a deputy rung, who have no deputy: that rung
    would be a gap during the storm."""
    ob = obligations(inp.policy)
    with_deputy_rung = {name for name, ladder in inp.policy.ladders.items()
                        if any(r.action is Action.DEPUTY for r in ladder.rungs)}
    out: list[Finding] = []
    for p in sorted(inp.people, key=lambda p: (p.region_code, p.id)):
        region = inp.regions.get(p.region_code)
        if region is None or (p.deputy_id is not None and p.deputy_id in inp.index.by_id):
            continue
        ladders = set().union(*(ob.called.get((region.level, r), frozenset()) for r in p.roles))
        if ladders & with_deputy_rung:
            out.append(Finding("deputies", "no_deputy", Severity.WARNING, region_code=p.region_code,
                               roles=p.roles, person_id=p.id, person_name=p.name))
    return out


def check_phones(inp: ReadinessInput) -> list[Finding]:
    out: list[Finding] = []
    for p in sorted(inp.people, key=lambda p: (p.region_code, p.id)):
        def finding(code: str, phone: str | None = None, person: PersonView = p) -> Finding:
            return Finding("phones", code, Severity.WARNING, region_code=person.region_code, roles=person.roles,
                           person_id=person.id, person_name=person.name, phone=phone)

        if not p.phone and not p.phone2:
            out.append(finding("no_phone"))
            continue
        if p.phone:
            got = classify_stored(p.phone)
            if got is None:
                out.append(finding("phone_invalid", p.phone))
            elif not got.mobile:
                out.append(finding("phone_not_mobile", p.phone))
        elif p.phone2:
            out.append(finding("landline_only", p.phone2))
        if p.phone2 and classify_stored(p.phone2) is None:
            out.append(finding("phone_invalid", p.phone2))
    return out


def check_speakers(inp: ReadinessInput) -> list[Finding]:
    out: list[Finding] = []
    for sp in sorted(inp.speakers, key=lambda s: (s.region_code, s.device_id)):
        if sp.online is None:
            code = "speaker_never_seen"
        elif not sp.online:
            code = "speaker_offline"
        elif sp.last_seen_at is None or inp.now - sp.last_seen_at > inp.speaker_stale_after:
            code = "speaker_stale"
        else:
            continue
        out.append(Finding("speakers", code, Severity.WARNING, region_code=sp.region_code,
                           device_id=sp.device_id, since=sp.last_seen_at))
    return out


def check_sources(inp: ReadinessInput) -> list[Finding]:
    """Mirrors the feed health view: a poll source is stale after three missed intervals."""
    return check_sources_facts(inp.sources, inp.now)


def check_sources_facts(sources: Iterable[SourceFacts], now: datetime) -> list[Finding]:
    """check_sources on its own (the running engine's watch uses it too)."""
    out: list[Finding] = []
    for src in sorted(sources, key=lambda s: s.name):
        def finding(code: str, severity: Severity = Severity.WARNING, s: SourceFacts = src) -> Finding:
            return Finding("sources", code, severity, source=s.name, since=s.last_success_at,
                           detail=(s.last_error or "")[:200])

        failing = src.failures > 0 or (
            src.last_error_at is not None and (src.last_success_at is None or src.last_error_at > src.last_success_at))
        if failing:
            out.append(finding("source_failing"))
            continue
        since = now - src.last_success_at if src.last_success_at is not None else None
        if src.kind == "cap_poll":
            if since is None:
                out.append(finding("source_never"))
            elif src.interval_seconds and since > timedelta(seconds=3 * src.interval_seconds + 60):
                out.append(finding("source_stale"))
        elif src.kind == "telemetry":
            if since is None:
                out.append(finding("source_never"))
            elif since > TELEMETRY_STALE_AFTER:
                out.append(finding("source_stale"))
        elif src.kind == "cap_push" and since is None:
            out.append(finding("source_never_pushed", Severity.INFO))  # quiet between storms is normal
    return out


CHECKS: tuple[Check, ...] = (
    check_regions, check_duty_room, check_required_roles, check_deputies, check_phones,
    check_speakers, check_sources,
)


def counts(inp: ReadinessInput) -> dict[str, int]:
    levels: dict[str, int] = defaultdict(int)
    for r in inp.regions.values():
        levels[r.level.value] += 1
    return {**{lv.value: levels[lv.value] for lv in Level}, "people": len(inp.people),
            "speakers": len(inp.speakers), "sources": len(inp.sources)}


def assess(inp: ReadinessInput, extra: Iterable[Finding] = (), checks: Sequence[Check] = CHECKS) -> Readiness:
    """Run every check. `extra`: findings from checks that need I/O (provider credentials
    tried with a dry call), made by the caller and added here."""
    findings = [f for check in checks for f in check(inp)]
    findings += list(extra)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: order[f.severity])  # stable: each check keeps its own order
    return Readiness(checked_at=inp.now, findings=tuple(findings), counts=counts(inp))
