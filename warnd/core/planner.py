"""Who is called for an alert, and who receives an escalation rung. Pure functions.

plan_alert turns an accepted alert into 叫应 calls, first-send deliveries and coverage gaps.
A role the policy requires that resolves to nobody is a CoverageGap, never a silent skip:
the duty room must see it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from warnd.core.domain import (
    Action,
    AlertFacts,
    CoverageGap,
    Level,
    PersonView,
    Plan,
    PlannedCall,
    PlannedDelivery,
    Purpose,
    RegionView,
)
from warnd.core.policy import Policy, Target
from warnd.core.roles import Roles

DUTY_OFFICER_ROLE = "duty_officer"


@dataclass(frozen=True)
class PeopleIndex:
    """People by id and by (region code, role), each bucket sorted by id. O(1) lookups.
    A person holding several roles (一肩挑) is in the bucket of each."""

    by_id: Mapping[int, PersonView]
    by_place: Mapping[tuple[str, str], tuple[PersonView, ...]]

    @classmethod
    def build(cls, people: Iterable[PersonView]) -> PeopleIndex:
        by_id: dict[int, PersonView] = {}
        buckets: dict[tuple[str, str], list[PersonView]] = defaultdict(list)
        for p in people:
            by_id[p.id] = p
            for role in dict.fromkeys(p.roles):
                buckets[(p.region_code, role)].append(p)
        by_place = {k: tuple(sorted(v, key=lambda p: p.id)) for k, v in buckets.items()}
        return cls(by_id=by_id, by_place=by_place)

    def at(self, region_code: str, role: str) -> tuple[PersonView, ...]:
        return self.by_place.get((region_code, role), ())


def ancestors(code: str, regions: Mapping[str, RegionView]) -> list[str]:
    """Parent, grandparent, ... of `code` (not `code` itself), nearest first."""
    out: list[str] = []
    seen = {code}
    region = regions.get(code)
    while region is not None and region.parent_code is not None and region.parent_code not in seen:
        out.append(region.parent_code)
        seen.add(region.parent_code)  # guards against a cycle in bad region data
        region = regions.get(region.parent_code)
    return out


def responsible_regions(
    covered: Iterable[str], regions: Mapping[str, RegionView], level: Level
) -> list[str]:
    """Regions at `level` that are covered or contain a covered region, sorted by code."""
    relevant: set[str] = set()
    for code in covered:
        if code in regions:
            relevant.add(code)
            relevant.update(ancestors(code, regions))
    return sorted(c for c in relevant if c in regions and regions[c].level is level)


def plan_alert(
    alert: AlertFacts,
    regions: Mapping[str, RegionView],
    people: Sequence[PersonView] | PeopleIndex,
    policy: Policy,
    now: datetime,
) -> Plan:
    index = people if isinstance(people, PeopleIndex) else PeopleIndex.build(people)
    # person id -> (window, ladder, channels): one call per person, shortest window wins. A
    # person holding two targeted roles (一肩挑) is one person: one call, one set of messages.
    chosen: dict[int, tuple[timedelta, str, tuple[str, ...]]] = {}
    called_as: dict[int, set[str]] = defaultdict(set)
    gaps: set[tuple[str, str, Level]] = set()
    for target in policy.targets(alert.hazard, alert.colour, alert.step):
        for region_code in responsible_regions(alert.region_codes, regions, target.level):
            for role in target.roles:
                found = index.at(region_code, role)
                if not found and role not in target.optional_roles:
                    gaps.add((region_code, role, target.level))
                for person in found:
                    chosen[person.id] = _merge(chosen.get(person.id), target)
                    called_as[person.id].add(role)

    calls: list[PlannedCall] = []
    for pid, (window, ladder, planned) in chosen.items():
        channels = policy.with_night_channels(planned, now)  # 叫醒: a voice call first at night
        p = index.by_id[pid]
        calls.append(
            PlannedCall(
                person_id=pid,
                # The call is recorded under the first of the person's roles it was made for.
                role=next(r for r in p.roles if r in called_as[pid]),
                region_code=p.region_code,
                deadline=now + window,
                ladder=ladder,
                channels=channels,
            )
        )
    calls.sort(key=lambda c: (c.region_code, c.role, c.person_id))
    deliveries = tuple(
        PlannedDelivery(
            person_id=c.person_id, channel=ch, purpose=Purpose.WARNING, call_person_id=c.person_id
        )
        for c in calls
        for ch in c.channels
    )
    return Plan(
        calls=tuple(calls),
        deliveries=deliveries,
        gaps=tuple(CoverageGap(region_code=r, role=role, level=lv) for r, role, lv in sorted(gaps)),
    )


def _merge(
    prev: tuple[timedelta, str, tuple[str, ...]] | None, target: Target
) -> tuple[timedelta, str, tuple[str, ...]]:
    """Two targets matched the same person: keep the shortest window and its ladder (the
    earlier target on a tie), and send on every channel either target asked for."""
    if prev is None:
        return (target.confirm_window, target.ladder, target.channels)
    window, ladder, channels = prev
    if target.confirm_window < window:
        window, ladder = target.confirm_window, target.ladder
        channels = target.channels + tuple(c for c in channels if c not in target.channels)
    else:
        channels = channels + tuple(c for c in target.channels if c not in channels)
    return (window, ladder, channels)


def nearest_holders(
    region_code: str,
    roles: Sequence[str],
    people_index: PeopleIndex,
    regions: Mapping[str, RegionView],
    exclude: int | None = None,
) -> tuple[PersonView, ...]:
    """Whoever holds one of `roles` nearest to `region_code`: the region itself first, then its
    parent, and so on; within a region, the first role in `roles` that has someone (a nearer
    official knows the place; preference order breaks ties there). Empty: nobody."""
    for code in [region_code, *ancestors(region_code, regions)]:
        for role in roles:
            found = tuple(p for p in people_index.at(code, role) if p.id != exclude)
            if found:
                return found
    return ()


def escalation_recipients(
    action: Action,
    person: PersonView,
    people_index: PeopleIndex,
    regions: Mapping[str, RegionView],
    roles: Roles,
) -> tuple[PersonView, ...]:
    """Who receives `action` for a silent `person`. Empty: nobody (the engine records a gap)."""
    if action is Action.RESEND:
        return (person,)
    if action is Action.DEPUTY:
        deputy = people_index.by_id.get(person.deputy_id) if person.deputy_id is not None else None
        return (deputy,) if deputy is not None and deputy.id != person.id else ()
    if action is Action.SUPERIOR:
        # Every role's superiors, in the person's role order (一肩挑: the 村支书's superiors, then
        # the 村主任's); the person themself is never their own superior.
        superiors = tuple(dict.fromkeys(
            s for r in person.roles if r in roles for s in roles[r].superiors))
        return nearest_holders(person.region_code, superiors, people_index, regions, exclude=person.id)
    if action is Action.DUTY_ROOM:
        chain = [person.region_code, *ancestors(person.region_code, regions)]
        known = [c for c in chain if c in regions]
        roots = (
            [known[-1]] if known else sorted(c for c, r in regions.items() if r.parent_code is None)
        )
        return tuple(p for root in roots for p in people_index.at(root, DUTY_OFFICER_ROLE))
    raise ValueError(f"unknown action {action!r}")
