from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from warnd.config import load_policy, load_roles, parse_policy
from warnd.core.domain import (
    Action,
    AlertFacts,
    AlertStatus,
    Colour,
    CoverageGap,
    Level,
    PersonView,
    Plan,
    Purpose,
    RegionView,
    Step,
)
from warnd.core.planner import (
    PeopleIndex,
    ancestors,
    escalation_recipients,
    plan_alert,
    responsible_regions,
)
from warnd.core.policy import Policy
from warnd.core.roles import Role, Roles

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
COUNTY = "431222"
T1, T2 = "431222101", "431222102"
V11, V12, V21 = "431222101001", "431222101002", "431222102001"
G111, G112, G121 = "431222101001001", "431222101001002", "431222101002001"


def region(code: str, level: Level, parent: str | None) -> RegionView:
    return RegionView(code=code, name=code, level=level, parent_code=parent)


REGIONS = {
    r.code: r
    for r in [
        region(COUNTY, Level.COUNTY, None),
        region(T1, Level.TOWNSHIP, COUNTY),
        region(T2, Level.TOWNSHIP, COUNTY),
        region(V11, Level.VILLAGE, T1),
        region(V12, Level.VILLAGE, T1),
        region(V21, Level.VILLAGE, T2),
        region(G111, Level.GROUP, V11),
        region(G112, Level.GROUP, V11),
        region(G121, Level.GROUP, V12),
    ]
}


def covered(*codes: str) -> frozenset[str]:
    """Area codes plus all descendants, as the targeting step hands them to the planner."""
    return frozenset(c for c in REGIONS if any(c.startswith(a) for a in codes))


_ids = iter(range(1, 10_000))


def person(
    role: str, region_code: str, deputy: int | None = None, pid: int | None = None
) -> PersonView:
    i = pid if pid is not None else next(_ids)
    return PersonView(
        id=i,
        name=f"p{i}",
        phone=f"+86138{i:08d}",
        role=role,
        region_code=region_code,
        deputy_id=deputy,
    )


PEOPLE = [
    person("flood_hq_member", COUNTY, pid=1),
    person("flood_hq_member", COUNTY, pid=2),
    person("county_leader_on_duty", COUNTY, pid=3),
    person("duty_officer", COUNTY, pid=4),
    person("duty_officer", COUNTY, pid=5),
    person("township_liaison_leader", T1, pid=10),
    person("township_liaison_leader", T2, pid=20),
    person("township_party_secretary", T1, pid=11),
    person("township_head", T1, pid=12, deputy=13),
    person("township_duty", T1, pid=13),
    person("township_head", T2, pid=22),
    # T2 has no township_duty and no party secretary: gaps.
    person("village_secretary", V11, pid=101),
    person("village_head", V11, pid=102, deputy=101),
    person("grid_worker", V11, pid=103),
    person("grid_worker", V11, pid=104),
    person("monitor", V11, pid=105),
    person("village_secretary", V12, pid=111),
    person("village_head", V12, pid=112),
    # V12 has no grid_worker (gap), no transfer_officer and no monitor (optional).
    person("group_leader", G111, pid=1001),
    # G112 has no group leader: gap.
    person("group_leader", G121, pid=1021),
    person("village_secretary", V21, pid=201),
]


@pytest.fixture(scope="module")
def roles() -> Roles:
    return load_roles()


@pytest.fixture(scope="module")
def policy(roles: Roles) -> Policy:
    return load_policy(roles=roles)


def alert(step: Step, colour: Colour, *areas: str, hazard: str = "rainstorm") -> AlertFacts:
    return AlertFacts(
        id=7,
        hazard=hazard,
        colour=colour,
        step=step,
        status=AlertStatus.ACTUAL,
        region_codes=covered(*areas),
        sent=NOW,
    )


def called(plan: Plan) -> list[int]:
    return [c.person_id for c in plan.calls]


def gaps(plan: Plan) -> set[tuple[str, str]]:
    return {(g.region_code, g.role) for g in plan.gaps}


# ------------------------------------------------------------------ region helpers


def test_ancestors_nearest_first_and_cycle_safe() -> None:
    assert ancestors(G111, REGIONS) == [V11, T1, COUNTY]
    assert ancestors(COUNTY, REGIONS) == []
    assert ancestors("nowhere", REGIONS) == []
    loop = {"a": region("a", Level.VILLAGE, "b"), "b": region("b", Level.TOWNSHIP, "a")}
    assert ancestors("a", loop) == ["b"]


def test_responsible_regions_include_ancestors_at_level() -> None:
    assert responsible_regions(covered(V11), REGIONS, Level.TOWNSHIP) == [T1]
    assert responsible_regions(covered(V11), REGIONS, Level.COUNTY) == [COUNTY]
    assert responsible_regions(covered(V11), REGIONS, Level.GROUP) == [G111, G112]
    assert responsible_regions(covered(T1), REGIONS, Level.VILLAGE) == [V11, V12]
    assert responsible_regions(covered(COUNTY), REGIONS, Level.TOWNSHIP) == [T1, T2]
    # Unknown codes in the area (e.g. a stale code) contribute nothing rather than crash.
    assert responsible_regions({"999999"}, REGIONS, Level.COUNTY) == []


# ------------------------------------------------------------------ plan_alert with defaults


def test_forecast_for_one_village_reaches_county_and_that_township_liaison(policy: Policy) -> None:
    plan = plan_alert(alert(Step.FORECAST, Colour.BLUE, V11), REGIONS, PEOPLE, policy, NOW)
    assert called(plan) == [3, 1, 2, 10]  # sorted by region, role, id
    assert plan.gaps == ()
    assert {c.deadline for c in plan.calls} == {NOW + timedelta(minutes=30)}
    assert {c.ladder for c in plan.calls} == {"standard"}


def test_warning_for_one_village_goes_to_its_township(policy: Policy) -> None:
    plan = plan_alert(alert(Step.WARNING, Colour.YELLOW, V11), REGIONS, PEOPLE, policy, NOW)
    assert called(plan) == [13, 12]  # township_duty < township_head alphabetically
    assert plan.gaps == ()
    assert all(c.region_code == T1 for c in plan.calls)


def test_warning_county_wide_reports_gaps_in_other_township(policy: Policy) -> None:
    plan = plan_alert(alert(Step.WARNING, Colour.BLUE, COUNTY), REGIONS, PEOPLE, policy, NOW)
    assert called(plan) == [13, 12, 22]
    assert plan.gaps == (CoverageGap(T2, "township_duty", Level.TOWNSHIP),)


def test_orange_warning_reaches_party_secretary_and_reports_missing_one(policy: Policy) -> None:
    plan = plan_alert(alert(Step.WARNING, Colour.ORANGE, COUNTY), REGIONS, PEOPLE, policy, NOW)
    assert 11 in called(plan)
    assert gaps(plan) == {(T2, "township_duty"), (T2, "township_party_secretary")}
    assert {c.deadline for c in plan.calls} == {NOW + timedelta(minutes=15)}


def test_imminent_township_area(policy: Policy) -> None:
    plan = plan_alert(alert(Step.IMMINENT, Colour.BLUE, T1), REGIONS, PEOPLE, policy, NOW)
    # Sorted by region code string, so V11's groups come before V12.
    assert called(plan) == [103, 104, 105, 102, 101, 1001, 112, 111, 1021]
    # Missing optional roles (transfer_officer anywhere, monitor in V12) are not gaps.
    assert gaps(plan) == {(V12, "grid_worker"), (G112, "group_leader")}
    assert all(g.level in (Level.VILLAGE, Level.GROUP) for g in plan.gaps)


def test_only_people_registered_at_exactly_the_region(policy: Policy) -> None:
    misplaced = person("township_head", V11, pid=999)  # a township role registered at a village
    plan = plan_alert(
        alert(Step.WARNING, Colour.BLUE, V11), REGIONS, [*PEOPLE, misplaced], policy, NOW
    )
    assert 999 not in called(plan)
    plan = plan_alert(alert(Step.WARNING, Colour.BLUE, V11), REGIONS, [misplaced], policy, NOW)
    assert gaps(plan) == {(T1, "township_head"), (T1, "township_duty")}


def test_imminent_red_adds_township_leaders_and_shorter_window(policy: Policy) -> None:
    plan = plan_alert(alert(Step.IMMINENT, Colour.RED, V12), REGIONS, PEOPLE, policy, NOW)
    assert called(plan) == [12, 11, 112, 111, 1021]
    assert gaps(plan) == {(V12, "grid_worker")}
    assert {c.deadline for c in plan.calls} == {NOW + timedelta(minutes=5)}
    assert {c.ladder for c in plan.calls} == {"red"}


def test_call_fields_and_one_delivery_per_channel(policy: Policy) -> None:
    plan = plan_alert(alert(Step.WARNING, Colour.BLUE, V11), REGIONS, PEOPLE, policy, NOW)
    c = plan.calls[0]
    assert (c.person_id, c.role, c.region_code, c.channels) == (13, "township_duty", T1, ("sms",))
    assert [(d.person_id, d.channel, d.purpose, d.call_person_id) for d in plan.deliveries] == [
        (13, "sms", Purpose.WARNING, 13),
        (12, "sms", Purpose.WARNING, 12),
    ]


def test_nobody_at_all_is_all_gaps(policy: Policy) -> None:
    plan = plan_alert(alert(Step.IMMINENT, Colour.BLUE, V21), REGIONS, [], policy, NOW)
    assert plan.calls == () and plan.deliveries == ()
    assert gaps(plan) == {(V21, "village_secretary"), (V21, "village_head"), (V21, "grid_worker")}


def test_no_targets_for_step_gives_empty_plan(roles: Roles) -> None:
    p = parse_policy(ONLY_WARNING, roles)
    plan = plan_alert(alert(Step.IMMINENT, Colour.RED, COUNTY), REGIONS, PEOPLE, p, NOW)
    assert plan == Plan(calls=(), deliveries=(), gaps=())


def test_area_outside_known_regions_gives_empty_plan(policy: Policy) -> None:
    a = AlertFacts(
        id=1,
        hazard="x",
        colour=Colour.RED,
        step=Step.IMMINENT,
        status=AlertStatus.ACTUAL,
        region_codes=frozenset({"999999"}),
        sent=NOW,
    )
    assert plan_alert(a, REGIONS, PEOPLE, policy, NOW).calls == ()


def test_plan_is_independent_of_input_order(policy: Policy) -> None:
    a = alert(Step.IMMINENT, Colour.RED, COUNTY)
    expected = plan_alert(a, REGIONS, PEOPLE, policy, NOW)
    rng = random.Random(4)
    for _ in range(5):
        shuffled = PEOPLE[:]
        rng.shuffle(shuffled)
        regions = dict(rng.sample(list(REGIONS.items()), len(REGIONS)))
        assert plan_alert(a, regions, shuffled, policy, NOW) == expected


def test_plan_accepts_prebuilt_index(policy: Policy) -> None:
    a = alert(Step.IMMINENT, Colour.BLUE, COUNTY)
    assert plan_alert(a, REGIONS, PeopleIndex.build(PEOPLE), policy, NOW) == plan_alert(
        a, REGIONS, PEOPLE, policy, NOW
    )


# ------------------------------------------------------------------ overlapping targets

ONLY_WARNING = """
channels = ["sms", "voice", "wecom"]
[ladders.slow]
rungs = [{ action = "resend", wait_minutes = 10 }, { action = "duty_room" }]
[ladders.fast]
rungs = [{ action = "resend", wait_minutes = 2 }, { action = "duty_room" }]
[[rules]]
hazards = "*"
step = "warning"
[[rules.targets]]
level = "township"
roles = ["township_head", "township_duty"]
confirm_minutes = 20
ladder = "slow"
channels = ["sms", "wecom"]
[[rules.targets]]
level = "township"
roles = ["township_duty"]
optional_roles = ["township_head"]
confirm_minutes = { blue = 30, yellow = 30, orange = 30, red = 4 }
ladder = "fast"
channels = ["voice", "sms"]
"""


def test_person_matched_twice_gets_one_call_with_shortest_window(roles: Roles) -> None:
    p = parse_policy(ONLY_WARNING, roles)
    red = plan_alert(alert(Step.WARNING, Colour.RED, T1), REGIONS, PEOPLE, p, NOW)
    assert called(red) == [13, 12]
    for c in red.calls:
        assert (c.deadline, c.ladder) == (NOW + timedelta(minutes=4), "fast")
        # Channels of every matching target, the winning target's first.
        assert c.channels == ("voice", "sms", "wecom")
    assert len(red.deliveries) == 6
    blue = plan_alert(alert(Step.WARNING, Colour.BLUE, T1), REGIONS, PEOPLE, p, NOW)
    for c in blue.calls:
        assert (c.deadline, c.ladder, c.channels) == (
            NOW + timedelta(minutes=20),
            "slow",
            ("sms", "wecom", "voice"),
        )


def test_gap_reported_once_and_only_where_required(roles: Roles) -> None:
    p = parse_policy(ONLY_WARNING, roles)
    plan = plan_alert(alert(Step.WARNING, Colour.BLUE, T2), REGIONS, PEOPLE, p, NOW)
    # township_duty missing at T2: required by both targets, reported once.
    assert plan.gaps == (CoverageGap(T2, "township_duty", Level.TOWNSHIP),)
    nobody = plan_alert(alert(Step.WARNING, Colour.BLUE, T2), REGIONS, [], p, NOW)
    # township_head is optional in the second target but required in the first: still a gap.
    assert gaps(nobody) == {(T2, "township_duty"), (T2, "township_head")}


# ------------------------------------------------------------------ escalation_recipients


@pytest.fixture(scope="module")
def index() -> PeopleIndex:
    return PeopleIndex.build(PEOPLE)


def by_id(pid: int) -> PersonView:
    return next(p for p in PEOPLE if p.id == pid)


def ids(people: tuple[PersonView, ...]) -> list[int]:
    return [p.id for p in people]


def test_resend_is_the_person(index: PeopleIndex, roles: Roles) -> None:
    assert ids(escalation_recipients(Action.RESEND, by_id(102), index, REGIONS, roles)) == [102]


def test_deputy(index: PeopleIndex, roles: Roles) -> None:
    assert ids(escalation_recipients(Action.DEPUTY, by_id(102), index, REGIONS, roles)) == [101]
    assert escalation_recipients(Action.DEPUTY, by_id(101), index, REGIONS, roles) == ()
    ghost = person("village_head", V11, deputy=424242)  # deputy no longer on the roster
    assert escalation_recipients(Action.DEPUTY, ghost, index, REGIONS, roles) == ()
    selfish = person("village_head", V11, deputy=0, pid=0)
    assert (
        escalation_recipients(Action.DEPUTY, selfish, PeopleIndex.build([selfish]), REGIONS, roles)
        == ()
    )


def test_superior_in_own_region_first(index: PeopleIndex, roles: Roles) -> None:
    # village_head -> village_secretary in the same village.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(102), index, REGIONS, roles)) == [101]
    # grid_worker -> village_secretary (first preference) even though village_head is there.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(103), index, REGIONS, roles)) == [101]


def test_superior_walks_up_regions(index: PeopleIndex, roles: Roles) -> None:
    # village_secretary -> township_head at the township.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(101), index, REGIONS, roles)) == [12]
    # group_leader -> village_secretary one level up.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(1001), index, REGIONS, roles)) == [101]
    # township_duty -> township_head, preferred over the party secretary also present.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(13), index, REGIONS, roles)) == [12]
    # township_head -> party secretary; liaison leader is second preference.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(12), index, REGIONS, roles)) == [11]
    # T2 has no party secretary: the liaison leader at T2.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(22), index, REGIONS, roles)) == [20]
    # township_liaison_leader -> county leader on duty at the county.
    assert ids(escalation_recipients(Action.SUPERIOR, by_id(10), index, REGIONS, roles)) == [3]


def test_superior_nearest_region_beats_role_preference(roles: Roles) -> None:
    # group_leader's superiors are [village_secretary, village_head]. The village has only a
    # village_head; a village_secretary is (mis)registered further up at the township.
    gl = person("group_leader", G121, pid=50)
    vh = person("village_head", V12, pid=51)
    vs_up = person("village_secretary", T1, pid=52)
    idx = PeopleIndex.build([gl, vh, vs_up])
    assert ids(escalation_recipients(Action.SUPERIOR, gl, idx, REGIONS, roles)) == [51]
    # Within the first region that has anyone, role preference decides.
    vs = person("village_secretary", V12, pid=53)
    idx = PeopleIndex.build([gl, vh, vs_up, vs])
    assert ids(escalation_recipients(Action.SUPERIOR, gl, idx, REGIONS, roles)) == [53]


def test_superior_excludes_the_person_and_returns_all_of_preferred_role() -> None:
    custom = Roles(
        {
            "a": Role("a", "A", Level.VILLAGE, (), ("a", "b")),
            "b": Role("b", "B", Level.VILLAGE, (), ()),
        }
    )
    me = person("a", V11, pid=60)
    peer1 = person("a", V11, pid=62)
    peer2 = person("a", V11, pid=61)
    b = person("b", V11, pid=63)
    idx = PeopleIndex.build([me, peer1, peer2, b])
    assert ids(escalation_recipients(Action.SUPERIOR, me, idx, REGIONS, custom)) == [61, 62]
    alone = PeopleIndex.build([me, b])
    assert ids(escalation_recipients(Action.SUPERIOR, me, alone, REGIONS, custom)) == [63]


def test_superior_none(index: PeopleIndex, roles: Roles) -> None:
    # county_leader_on_duty has no superiors.
    assert escalation_recipients(Action.SUPERIOR, by_id(3), index, REGIONS, roles) == ()
    unknown = person("tea_maker", V11)
    assert escalation_recipients(Action.SUPERIOR, unknown, index, REGIONS, roles) == ()
    lonely = person("village_head", V21)
    only_me = PeopleIndex.build([lonely])
    assert escalation_recipients(Action.SUPERIOR, lonely, only_me, REGIONS, roles) == ()


def test_duty_room_is_county_duty_officers(index: PeopleIndex, roles: Roles) -> None:
    for pid in (1001, 101, 12, 3):
        assert ids(escalation_recipients(Action.DUTY_ROOM, by_id(pid), index, REGIONS, roles)) == [
            4,
            5,
        ]
    stray = person("village_head", "000000000000")  # region not in the table: still the county
    assert ids(escalation_recipients(Action.DUTY_ROOM, stray, index, REGIONS, roles)) == [4, 5]
    no_duty = PeopleIndex.build([p for p in PEOPLE if p.role != "duty_officer"])
    assert escalation_recipients(Action.DUTY_ROOM, by_id(101), no_duty, REGIONS, roles) == ()


# ------------------------------------------------------------------ scale


def big_county() -> tuple[dict[str, RegionView], list[PersonView]]:
    regions = {COUNTY: region(COUNTY, Level.COUNTY, None)}
    people = [person("duty_officer", COUNTY, pid=1), person("county_leader_on_duty", COUNTY, pid=2)]
    pid = 10
    for t in range(1, 23):
        tc = f"{COUNTY}{t:03d}"
        regions[tc] = region(tc, Level.TOWNSHIP, COUNTY)
        for role in (
            "township_head",
            "township_duty",
            "township_party_secretary",
            "township_liaison_leader",
        ):
            people.append(person(role, tc, pid=pid))
            pid += 1
        for v in range(1, 24):
            vc = f"{tc}{v:03d}"
            regions[vc] = region(vc, Level.VILLAGE, tc)
            for role in (
                "village_secretary",
                "village_head",
                "grid_worker",
                "grid_worker",
                "monitor",
            ):
                people.append(person(role, vc, pid=pid, deputy=pid - 1))
                pid += 1
            for g in range(1, 6):
                gc = f"{vc}{g:03d}"
                regions[gc] = region(gc, Level.GROUP, vc)
                people.append(person("group_leader", gc, pid=pid))
                pid += 1
    return regions, people


def test_plan_and_escalation_for_a_whole_county(policy: Policy, roles: Roles) -> None:
    regions, people = big_county()
    assert len(people) > 5_000
    a = AlertFacts(
        id=1,
        hazard="x",
        colour=Colour.RED,
        step=Step.IMMINENT,
        status=AlertStatus.ACTUAL,
        region_codes=frozenset(regions),
        sent=NOW,
    )
    plan = plan_alert(a, regions, people, policy, NOW)
    index = PeopleIndex.build(people)
    for p in people:
        escalation_recipients(Action.SUPERIOR, p, index, regions, roles)
        escalation_recipients(Action.DUTY_ROOM, p, index, regions, roles)
    assert len(plan.calls) == 22 * (2 + 23 * 5 + 23 * 5)
    assert plan.gaps == ()


# ------------------------------------------------------------------ 一肩挑: one person, several roles


def one_shoulder(pid: int = 900, region_code: str = V12) -> PersonView:
    """村党支部书记、村委会主任 held by one person (the common 一肩挑 arrangement)."""
    return PersonView(id=pid, name="一肩挑", phone="+8613800000900", role="village_secretary",
                      region_code=region_code, extra_roles=("village_head",))


def test_one_person_holding_two_called_roles_gets_one_call_and_fills_both(policy: Policy) -> None:
    people = [p for p in PEOPLE if p.region_code != V12] + [one_shoulder()]
    plan = plan_alert(alert(Step.IMMINENT, Colour.BLUE, V12), REGIONS, people, policy, NOW)
    assert called(plan).count(900) == 1  # two roles targeted, one call
    (call,) = [c for c in plan.calls if c.person_id == 900]
    assert call.role == "village_secretary"  # recorded under the first of the person's roles
    assert [d.person_id for d in plan.deliveries].count(900) == len(call.channels)  # one message per channel
    # Neither role is a gap: the one person holds both. Only the missing 网格员 is.
    assert gaps(plan) == {(V12, "grid_worker")}


def test_a_call_is_recorded_under_the_role_the_policy_asked_for(policy: Policy) -> None:
    # A 值班员 who is also a 防指成员: a forecast calls them as 防指成员 (值班员 is not targeted).
    both = PersonView(id=950, name="兼", phone="+8613800000950", role="duty_officer",
                      region_code=COUNTY, extra_roles=("flood_hq_member",))
    plan = plan_alert(alert(Step.FORECAST, Colour.BLUE, V11), REGIONS, [both], policy, NOW)
    assert [(c.person_id, c.role) for c in plan.calls] == [(950, "flood_hq_member")]
    assert (COUNTY, "flood_hq_member") not in gaps(plan)
    assert (COUNTY, "county_leader_on_duty") in gaps(plan)


def test_index_finds_a_person_under_each_role() -> None:
    p = one_shoulder()
    idx = PeopleIndex.build([p])
    assert idx.at(V12, "village_secretary") == (p,)
    assert idx.at(V12, "village_head") == (p,)
    assert p.roles == ("village_secretary", "village_head")


def test_superiors_of_every_role_never_the_person_themself(roles: Roles) -> None:
    # village_head's first superior is village_secretary — which this person is. Their
    # superior is therefore the township head (for both roles), not themself.
    p = one_shoulder(region_code=V11)
    idx = PeopleIndex.build([p, *[q for q in PEOPLE if q.region_code != V11]])
    assert ids(escalation_recipients(Action.SUPERIOR, p, idx, REGIONS, roles)) == [12]
    # A duty officer who holds a second role is still found by the duty-room rung.
    duty = PersonView(id=960, name="值班", phone="+8613800000960", role="flood_hq_member",
                      region_code=COUNTY, extra_roles=("duty_officer",))
    idx2 = PeopleIndex.build([duty, by_id(101)])
    assert ids(escalation_recipients(Action.DUTY_ROOM, by_id(101), idx2, REGIONS, roles)) == [960]
