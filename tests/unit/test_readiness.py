"""Readiness checks (warnd.core.readiness): pure functions over a roster, the policy, the
loudspeaker fleet and the feed sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warnd.config import load_policy, load_roles, parse_policy
from warnd.core.domain import Level, PersonView, RegionView, Step
from warnd.core.policy import Policy
from warnd.core.readiness import (
    Finding,
    ReadinessInput,
    Severity,
    SourceFacts,
    SpeakerFacts,
    assess,
    check_deputies,
    check_duty_room,
    check_phones,
    check_required_roles,
    check_sources,
    check_speakers,
    obligations,
)
from warnd.core.roles import Roles
from warnd.views.readiness import Names, format_readiness, readiness_json

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
COUNTY, TOWN, VILLAGE, VILLAGE2, GROUP = "430999", "430999100", "430999100201", "430999100202", "430999100201001"
REGIONS = {
    r.code: r for r in [
        RegionView(COUNTY, "示例县", Level.COUNTY, None),
        RegionView(TOWN, "青山镇", Level.TOWNSHIP, COUNTY),
        RegionView(VILLAGE, "石门村", Level.VILLAGE, TOWN),
        RegionView(VILLAGE2, "枫树村", Level.VILLAGE, TOWN),
        RegionView(GROUP, "一组", Level.GROUP, VILLAGE),
    ]
}


def person(pid: int, role: str, region: str, *, extra: tuple[str, ...] = (), deputy: int | None = None,
           phone: str | None = None, phone2: str | None = None) -> PersonView:
    return PersonView(id=pid, name=f"人{pid}", phone=f"+86138{pid:08d}" if phone is None else phone,
                      role=role, region_code=region, deputy_id=deputy, phone2=phone2, extra_roles=extra)


def full_roster() -> list[PersonView]:
    """Every required role everywhere, each with a deputy (the next person), mobiles only."""
    spec = [
        ("county_leader_on_duty", COUNTY, ()), ("flood_hq_member", COUNTY, ()), ("duty_officer", COUNTY, ()),
        ("township_liaison_leader", TOWN, ()), ("township_party_secretary", TOWN, ()),
        ("township_head", TOWN, ()), ("township_duty", TOWN, ()),
        ("village_secretary", VILLAGE, ("village_head",)), ("grid_worker", VILLAGE, ()),
        ("village_secretary", VILLAGE2, ()), ("village_head", VILLAGE2, ()), ("grid_worker", VILLAGE2, ()),
        ("group_leader", GROUP, ()),
    ]
    n = len(spec)
    return [person(i + 1, role, region, extra=extra, deputy=(i + 1) % n + 1)
            for i, (role, region, extra) in enumerate(spec)]


@pytest.fixture(scope="module")
def roles() -> Roles:
    return load_roles()


@pytest.fixture(scope="module")
def policy(roles: Roles) -> Policy:
    return load_policy(roles=roles)


def inp(policy: Policy, people: list[PersonView], **kw: object) -> ReadinessInput:
    return ReadinessInput(regions=REGIONS, people=people, policy=policy, now=NOW, **kw)  # type: ignore[arg-type]


def codes(findings: list[Finding]) -> list[tuple[str, str | None]]:
    return [(f.code, f.region_code) for f in findings]


def test_obligations_ask_the_policy_as_the_planner_would(policy: Policy, roles: Roles) -> None:
    ob = obligations(policy)
    assert ob.required[Level.VILLAGE][Step.IMMINENT] == ("village_secretary", "village_head", "grid_worker")
    assert "transfer_officer" not in ob.required_at(Level.VILLAGE)  # optional: never a hole
    # Orange/red warnings add the party secretary; red imminent asks the township too.
    assert set(ob.required[Level.TOWNSHIP][Step.WARNING]) == {"township_head", "township_duty", "township_party_secretary"}
    assert set(ob.required[Level.TOWNSHIP][Step.IMMINENT]) == {"township_party_secretary", "township_head"}
    assert ob.called[(Level.VILLAGE, "monitor")] == frozenset({"standard", "red"})
    # A hazard-specific rule is asked too, not only the "*" rules.
    text = """
[ladders.standard]
rungs = [{ action = "resend", wait_minutes = 5 }, { action = "duty_room" }]
[[rules]]
hazards = "*"
step = "imminent"
[[rules.targets]]
level = "village"
roles = ["village_secretary"]
confirm_minutes = 10
ladder = "standard"
[[rules]]
hazards = ["flash_flood"]
step = "imminent"
[[rules.targets]]
level = "village"
roles = ["monitor"]
confirm_minutes = 10
ladder = "standard"
"""
    ob2 = obligations(parse_policy(text, roles))
    assert ob2.required[Level.VILLAGE][Step.IMMINENT] == ("monitor", "village_secretary")


def test_a_full_roster_is_ready(policy: Policy) -> None:
    r = assess(inp(policy, full_roster()))
    assert r.findings == ()
    assert (r.status, r.exit_code) == ("ready", 0)


def test_required_roles_nobody_is_an_error_one_missing_a_warning(policy: Policy) -> None:
    people = [p for p in full_roster() if p.region_code != VILLAGE2 and p.role != "township_duty"]
    found = check_required_roles(inp(policy, people))
    assert codes(found) == [("role_unfilled", TOWN), ("nobody_to_call", VILLAGE2)]
    assert found[0].roles == ("township_duty",) and found[0].steps == (Step.WARNING,)
    assert found[1].severity is Severity.ERROR
    assert found[1].roles == ("village_secretary", "village_head", "grid_worker")
    # 石门村's 村主任 is held by its 村支书 (一肩挑): not a hole.
    assert all(f.region_code != VILLAGE for f in found)


def test_duty_room(policy: Policy) -> None:
    people = [p for p in full_roster() if p.role != "duty_officer"]
    (f,) = check_duty_room(inp(policy, people))
    assert (f.code, f.severity, f.region_code) == ("no_duty_officer", Severity.ERROR, COUNTY)
    landline = person(50, "duty_officer", COUNTY, phone="", phone2="+867451234567")
    (f,) = check_duty_room(inp(policy, [*people, landline]))
    assert (f.code, f.severity) == ("duty_room_no_mobile", Severity.WARNING)
    second_role = person(51, "flood_hq_member", COUNTY, extra=("duty_officer",))
    assert check_duty_room(inp(policy, [*people, second_role])) == []


def test_deputies_only_for_officials_the_policy_calls_on_a_deputy_rung(policy: Policy, roles: Roles) -> None:
    people = full_roster()
    people[8] = person(9, "grid_worker", VILLAGE)  # no deputy
    people[9] = person(10, "village_secretary", VILLAGE2, deputy=999)  # deputy inactive/not listed
    people[2] = person(3, "duty_officer", COUNTY)  # not called by the policy: no deputy needed
    found = check_deputies(inp(policy, people))
    assert [(f.code, f.person_id) for f in found] == [("no_deputy", 9), ("no_deputy", 10)]
    no_deputy_rung = parse_policy("""
[ladders.fast]
rungs = [{ action = "resend", wait_minutes = 5 }, { action = "duty_room" }]
[[rules]]
hazards = "*"
step = "imminent"
[[rules.targets]]
level = "village"
roles = ["grid_worker"]
confirm_minutes = 10
ladder = "fast"
""", roles)
    assert check_deputies(inp(no_deputy_rung, people)) == []


def test_phones(policy: Policy) -> None:
    people = [
        person(1, "grid_worker", VILLAGE),  # fine
        person(2, "grid_worker", VILLAGE, phone="", phone2="+867451234567"),  # landline only
        person(3, "grid_worker", VILLAGE, phone="+867451234568"),  # a landline stored as the mobile
        person(4, "grid_worker", VILLAGE, phone="+8612800000000"),  # no such mobile
        person(5, "grid_worker", VILLAGE, phone="", phone2=None),  # nothing
        person(6, "grid_worker", VILLAGE, phone2="12345"),  # a broken second number
    ]
    found = check_phones(inp(policy, people))
    assert [(f.code, f.person_id, f.phone) for f in found] == [
        ("landline_only", 2, "+867451234567"), ("phone_not_mobile", 3, "+867451234568"),
        ("phone_invalid", 4, "+8612800000000"), ("no_phone", 5, None), ("phone_invalid", 6, "12345")]
    assert {f.severity for f in found} == {Severity.WARNING}


def test_speakers(policy: Policy) -> None:
    fresh = NOW - timedelta(seconds=60)
    speakers = [
        SpeakerFacts("A", VILLAGE, True, fresh),
        SpeakerFacts("B", VILLAGE, None, None),
        SpeakerFacts("C", VILLAGE, False, fresh),
        SpeakerFacts("D", GROUP, True, NOW - timedelta(minutes=10)),
    ]
    found = check_speakers(inp(policy, [], speakers=speakers, speaker_stale_after=timedelta(minutes=3)))
    assert [(f.code, f.device_id) for f in found] == [
        ("speaker_never_seen", "B"), ("speaker_offline", "C"), ("speaker_stale", "D")]


def test_sources(policy: Policy) -> None:
    ago = lambda minutes: NOW - timedelta(minutes=minutes)  # noqa: E731
    sources = [
        SourceFacts("a-poll-ok", "cap_poll", 60, last_success_at=ago(2)),
        SourceFacts("b-poll-stale", "cap_poll", 60, last_success_at=ago(5)),  # > 3 × 60 s + 60 s
        SourceFacts("c-poll-never", "cap_poll", 60),
        SourceFacts("d-failing", "cap_poll", 60, last_success_at=ago(1), failures=2, last_error="HTTP 503"),
        SourceFacts("e-push-quiet", "cap_push"),
        SourceFacts("f-push-bad-token", "cap_push", last_error="push with bad credentials", last_error_at=ago(1)),
        SourceFacts("g-gauges-stale", "telemetry", last_success_at=ago(90)),
        SourceFacts("h-gauges-ok", "telemetry", last_success_at=ago(5)),
        SourceFacts("i-unconfigured", None, last_success_at=ago(9999)),
    ]
    found = check_sources(inp(policy, [], sources=sources))
    assert [(f.code, f.source, f.severity.value) for f in found] == [
        ("source_stale", "b-poll-stale", "warning"), ("source_never", "c-poll-never", "warning"),
        ("source_failing", "d-failing", "warning"), ("source_never_pushed", "e-push-quiet", "info"),
        ("source_failing", "f-push-bad-token", "warning"), ("source_stale", "g-gauges-stale", "warning")]
    assert found[2].detail == "HTTP 503"


def test_status_exit_code_and_extra_findings(policy: Policy) -> None:
    people = full_roster()
    people[8] = person(9, "grid_worker", VILLAGE)  # no deputy: a warning
    r = assess(inp(policy, people))
    assert (r.status, r.exit_code) == ("warnings", 1)
    probe = Finding("providers", "credentials_rejected", Severity.ERROR, detail="SignatureIncorrectOrUnapproved")
    r2 = assess(inp(policy, people), extra=[probe])
    assert (r2.status, r2.exit_code) == ("errors", 2)
    assert r2.findings[0] is probe  # errors first
    info_only = assess(inp(policy, full_roster(), sources=[SourceFacts("push", "cap_push")]))
    assert (info_only.status, info_only.exit_code) == ("ready", 0)


def test_chinese_text_names_places_and_roles_not_codes(policy: Policy, roles: Roles) -> None:
    people = [p for p in full_roster() if p.region_code != VILLAGE2 and p.role not in ("duty_officer", "township_duty")]
    people = [person(9, "grid_worker", VILLAGE) if p.id == 9 else p for p in people]
    people.append(person(60, "transfer_officer", VILLAGE, phone="", phone2="+867451234567", deputy=1))
    r = assess(inp(policy, people))
    text = format_readiness(r, Names(REGIONS, roles), "示例县").splitlines()
    assert text[1] == "检查了：1个乡镇、2个村、1个组，责任人9人，喇叭0台，信息源0个"
    assert text[2:] == [
        "错误（2项）",
        "  县值班室没有值班员：叫应无人确认时会转给值班室，责任人空缺也通知值班室，现在这些都将无人接收。请在名单中加入县级“值班员”",
        "  必需职务全部空缺（1项）：预警到这些地方时，没有一个必需的责任人可以叫应",
        "    青山镇·枫树村：村支书、村主任、网格员都无人担任（临灾预警）",
        "警告（5项）",
        "  必需职务无人担任（1项）：括号里是需要这一职务的预警阶段；届时将作为责任人空缺报给值班室",
        "    青山镇：乡镇值班人员（预警）",
        # 人2 and 人6 named the removed 值班员 and 乡镇值班人员 as deputies: their deputy is gone too.
        "  没有替补人（AB角）的责任人（3项）：本人不应时，替补叫应这一步将落空",
        "    示例县：防指成员 人2",
        "    青山镇：乡镇长 人6",
        "    青山镇·石门村：网格员 人9",
        "  只有固定电话的责任人（1项）：短信永远发不到，只能打电话叫应",
        "    青山镇·石门村：转移责任人 人60（0745-1234567）",
        "结论：有错误，未就绪，必须在汛前处理（退出码 2）",
    ]
    data = readiness_json(r, Names(REGIONS, roles))
    assert (data["status"], data["exit_code"], data["summary"]) == ("errors", 2, {"error": 2, "warning": 5, "info": 0})
    gap = next(f for f in data["findings"] if f["code"] == "nobody_to_call")
    assert (gap["region_name"], gap["role_labels"], gap["steps"]) == ("青山镇·枫树村", ["村支书", "村主任", "网格员"], ["imminent"])
