from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warnd.config import PolicyError, load_policy, load_roles, package_default, parse_policy
from warnd.core.domain import Action, Colour, Level, Step
from warnd.core.policy import Ladder, Policy, Rung, step_from_lead
from warnd.core.roles import Roles


@pytest.fixture(scope="module")
def roles() -> Roles:
    return load_roles()


@pytest.fixture(scope="module")
def policy(roles: Roles) -> Policy:
    return load_policy(roles=roles)


def by_level(
    policy: Policy, colour: Colour, step: Step, hazard: str = "rainstorm"
) -> dict[Level, set[str]]:
    out: dict[Level, set[str]] = {}
    for t in policy.targets(hazard, colour, step):
        out.setdefault(t.level, set()).update(t.roles)
    return out


# ------------------------------------------------------------------ shipped defaults


def test_default_file_loads_without_arguments() -> None:
    p = load_policy()
    assert p.source == str(package_default("policy.toml"))
    assert p.channels == ("sms",)
    assert p.forecast_lead == timedelta(hours=6)
    assert p.warning_lead == timedelta(hours=3)


@pytest.mark.parametrize("colour", list(Colour))
def test_default_forecast_reaches_county_and_liaison_leaders(
    policy: Policy, colour: Colour
) -> None:
    assert by_level(policy, colour, Step.FORECAST) == {
        Level.COUNTY: {"flood_hq_member", "county_leader_on_duty"},
        Level.TOWNSHIP: {"township_liaison_leader"},
    }


@pytest.mark.parametrize(
    ("colour", "secretary"),
    [(Colour.BLUE, False), (Colour.YELLOW, False), (Colour.ORANGE, True), (Colour.RED, True)],
)
def test_default_warning_adds_party_secretary_for_orange_and_red(
    policy: Policy, colour: Colour, secretary: bool
) -> None:
    expected = {"township_head", "township_duty"} | (
        {"township_party_secretary"} if secretary else set()
    )
    assert by_level(policy, colour, Step.WARNING) == {Level.TOWNSHIP: expected}


@pytest.mark.parametrize("colour", list(Colour))
def test_default_imminent_village_and_group(policy: Policy, colour: Colour) -> None:
    levels = by_level(policy, colour, Step.IMMINENT)
    assert levels[Level.VILLAGE] == {
        "village_secretary",
        "village_head",
        "grid_worker",
        "transfer_officer",
        "monitor",
    }
    assert levels[Level.GROUP] == {"group_leader"}
    if colour is Colour.RED:
        assert levels[Level.TOWNSHIP] == {"township_party_secretary", "township_head"}
    else:
        assert Level.TOWNSHIP not in levels


def test_default_imminent_optional_roles(policy: Policy) -> None:
    (village,) = [
        t for t in policy.targets("x", Colour.BLUE, Step.IMMINENT) if t.level is Level.VILLAGE
    ]
    assert village.optional_roles == {"transfer_officer", "monitor"}
    # Required roles come first so a reader of the plan sees them first.
    assert village.roles[:3] == ("village_secretary", "village_head", "grid_worker")


@pytest.mark.parametrize("step", list(Step))
def test_default_windows_shorten_with_colour(policy: Policy, step: Step) -> None:
    windows = [min(t.confirm_window for t in policy.targets("x", c, step)) for c in Colour]
    assert windows == sorted(windows, reverse=True)
    assert windows[0] > windows[-1]


def test_default_window_values(policy: Policy) -> None:
    def window(step: Step, colour: Colour) -> int:
        return int(policy.targets("x", colour, step)[0].confirm_window.total_seconds() // 60)

    assert [window(Step.FORECAST, c) for c in Colour] == [30, 30, 20, 15]
    assert [window(Step.WARNING, c) for c in Colour] == [20, 20, 15, 10]
    assert [window(Step.IMMINENT, c) for c in Colour] == [10, 10, 8, 5]


def test_default_red_uses_red_ladder(policy: Policy) -> None:
    for step in Step:
        assert {t.ladder for t in policy.targets("x", Colour.RED, step)} == {"red"}
        assert {t.ladder for t in policy.targets("x", Colour.BLUE, step)} == {"standard"}


def test_default_ladders(policy: Policy) -> None:
    std = policy.ladders["standard"]
    assert [r.action for r in std.rungs] == [
        Action.RESEND,
        Action.DEPUTY,
        Action.SUPERIOR,
        Action.DUTY_ROOM,
    ]
    assert [r.wait for r in std.rungs[:-1]] == [timedelta(minutes=5)] * 3
    red = policy.ladders["red"]
    assert red.rungs[-1].action is Action.DUTY_ROOM
    total = sum((r.wait for r in red.rungs), timedelta())
    assert total < sum((r.wait for r in std.rungs), timedelta())


def test_default_every_step_and_colour_has_targets(policy: Policy) -> None:
    for step in Step:
        for colour in Colour:
            assert policy.targets("anything", colour, step)


# ------------------------------------------------------------------ format semantics

BASE = """
channels = ["sms", "voice"]
[ladders.standard]
rungs = [{ action = "resend", wait_minutes = 5 }, { action = "duty_room" }]
[ladders.fast]
rungs = [{ action = "duty_room" }]
"""


def make(roles: Roles, rules: str, base: str = BASE) -> Policy:
    return parse_policy(base + rules, roles, source="test.toml")


def test_hazard_specific_rule_replaces_wildcard_for_that_step(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "warning"
targets = [{ level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard" }]
[[rules]]
hazards = ["Flash_Flood"]
step = "warning"
targets = [{ level = "township", roles = ["township_duty"], confirm_minutes = 7, ladder = "fast" }]
[[rules]]
hazards = "*"
step = "imminent"
targets = [{ level = "village", roles = ["village_head"], confirm_minutes = 5, ladder = "standard" }]
""",
    )
    (t,) = p.targets("flash_flood", Colour.BLUE, Step.WARNING)  # case-insensitive
    assert (t.roles, t.confirm_window, t.ladder) == (
        ("township_duty",),
        timedelta(minutes=7),
        "fast",
    )
    (t,) = p.targets("rainstorm", Colour.BLUE, Step.WARNING)
    assert t.roles == ("township_head",)
    # Precedence is per step: no flash_flood rule for imminent, so "*" still applies.
    (t,) = p.targets("flash_flood", Colour.BLUE, Step.IMMINENT)
    assert t.roles == ("village_head",)
    assert p.targets("flash_flood", Colour.BLUE, Step.FORECAST) == ()


def test_all_matching_rules_of_same_kind_apply_in_file_order(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "warning"
targets = [{ level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard" }]
[[rules]]
hazards = "*"
step = "warning"
targets = [{ level = "township", roles = ["township_duty"], confirm_minutes = 20, ladder = "standard" }]
""",
    )
    assert [t.roles for t in p.targets("x", Colour.RED, Step.WARNING)] == [
        ("township_head",),
        ("township_duty",),
    ]


def test_colours_restrict_target_and_per_colour_tables(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = ["rainstorm", "flood"]
step = "warning"
[[rules.targets]]
level = "township"
roles = ["township_party_secretary"]
colours = ["red"]
confirm_minutes = { red = 4 }
ladder = { red = "fast" }
channels = ["voice"]
[[rules.targets]]
level = "township"
roles = ["township_head"]
confirm_minutes = { blue = 30, yellow = 25, orange = 20, red = 10 }
ladder = "standard"
""",
    )
    assert [t.roles for t in p.targets("flood", Colour.ORANGE, Step.WARNING)] == [
        ("township_head",)
    ]
    red = p.targets("flood", Colour.RED, Step.WARNING)
    assert [t.roles for t in red] == [("township_party_secretary",), ("township_head",)]
    assert (red[0].confirm_window, red[0].ladder, red[0].channels) == (
        timedelta(minutes=4),
        "fast",
        ("voice",),
    )
    # A target without channels uses every declared channel.
    assert red[1].channels == ("sms", "voice")
    assert p.targets("flood", Colour.YELLOW, Step.WARNING)[0].confirm_window == timedelta(
        minutes=25
    )


def test_optional_only_target(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "imminent"
targets = [{ level = "village", roles = [], optional_roles = ["monitor"], confirm_minutes = 5, ladder = "fast" }]
""",
    )
    (t,) = p.targets("x", Colour.BLUE, Step.IMMINENT)
    assert t.roles == ("monitor",) and t.optional_roles == {"monitor"}


def test_rung_channels_and_fractional_minutes(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "imminent"
targets = [{ level = "village", roles = ["village_head"], confirm_minutes = 2.5, ladder = "voice" }]
""",
        base=BASE
        + """
[ladders.voice]
rungs = [{ action = "resend", wait_minutes = 1.5, channels = ["voice"] }, { action = "duty_room" }]
""",
    )
    assert p.ladders["voice"].rungs[0] == Rung(Action.RESEND, timedelta(seconds=90), ("voice",))
    assert p.ladders["voice"].rungs[1].channels == ()
    assert p.targets("x", Colour.BLUE, Step.IMMINENT)[0].confirm_window == timedelta(seconds=150)


def test_channels_default_to_sms(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "imminent"
targets = [{ level = "village", roles = ["village_head"], confirm_minutes = 5, ladder = "fast" }]
""",
        base='[ladders.fast]\nrungs = [{ action = "duty_room" }]\n',
    )
    assert p.channels == ("sms",)
    assert p.targets("x", Colour.RED, Step.IMMINENT)[0].channels == ("sms",)


def test_lead_hours_configurable(roles: Roles) -> None:
    p = make(
        roles,
        """
[[rules]]
hazards = "*"
step = "imminent"
targets = [{ level = "village", roles = ["village_head"], confirm_minutes = 5, ladder = "fast" }]
""",
        base='forecast_lead_hours = 12\nwarning_lead_hours = 1.5\n[ladders.fast]\nrungs = [{ action = "duty_room" }]\n',
    )
    assert (p.forecast_lead, p.warning_lead) == (timedelta(hours=12), timedelta(minutes=90))


# ------------------------------------------------------------------ errors

GOOD_TARGET = (
    'level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard"'
)


def rules_with_target(target: str) -> str:
    return f"""
[[rules]]
hazards = "*"
step = "forecast"
targets = [{{ level = "county", roles = ["flood_hq_member"], confirm_minutes = 30, ladder = "standard" }}]
[[rules]]
hazards = "*"
step = "warning"
targets = [{{ {GOOD_TARGET} }}, {{ {target} }}]
"""


@pytest.mark.parametrize(
    ("target", "path", "reason"),
    [
        (
            'level = "township", roles = ["township_head"], confirm_minutes = 0, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "positive",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = -5, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "positive",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = "20", ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "number",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = true, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "number",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = { blue = 30, yellow = 30, orange = 20, red = 0 }, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes.red",
            "positive",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = { blue = 30, yellow = 30, orange = 20 }, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "red",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = { blue = 30, yellow = 30, orange = 20, red = 10, purple = 5 }, ladder = "standard"',
            "rules[1].targets[1].confirm_minutes.purple",
            "unknown colour",
        ),
        (
            'level = "township", roles = ["township_heed"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].roles[0]",
            "unknown role 'township_heed'",
        ),
        (
            'level = "township", roles = ["township_head"], optional_roles = ["monitr"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].optional_roles[0]",
            "unknown role",
        ),
        (
            'level = "township", roles = ["township_head", "village_head"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].roles[1]",
            "level 'village'",
        ),
        (
            'level = "township", roles = ["township_head"], optional_roles = ["township_head"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].optional_roles",
            "once",
        ),
        (
            'level = "township", roles = ["township_head", "township_head"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].roles",
            "twice",
        ),
        (
            'level = "township", roles = [], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].roles",
            "empty",
        ),
        (
            'level = "town", roles = ["township_head"], confirm_minutes = 20, ladder = "standard"',
            "rules[1].targets[1].level",
            "unknown level",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standrad"',
            "rules[1].targets[1].ladder",
            "unknown ladder 'standrad'",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = { blue = "standard", yellow = "standard", orange = "standard", red = "nope" }',
            "rules[1].targets[1].ladder.red",
            "unknown ladder",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard", channels = ["wecom"]',
            "rules[1].targets[1].channels[0]",
            "unknown channel 'wecom'",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard", colours = ["crimson"]',
            "rules[1].targets[1].colours[0]",
            "unknown colour",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minutes = { red = 5 }, ladder = "standard", colours = ["red", "orange"]',
            "rules[1].targets[1].confirm_minutes",
            "orange",
        ),
        (
            'level = "township", roles = ["township_head"], confirm_minute = 20, ladder = "standard"',
            "rules[1].targets[1].confirm_minute",
            "unknown key",
        ),
        (
            'level = "township", roles = ["township_head"], ladder = "standard"',
            "rules[1].targets[1].confirm_minutes",
            "missing",
        ),
    ],
)
def test_target_errors_name_file_path_and_reason(
    roles: Roles, target: str, path: str, reason: str
) -> None:
    with pytest.raises(PolicyError) as e:
        make(roles, rules_with_target(target))
    msg = str(e.value)
    assert msg.startswith("test.toml: ")
    assert f" {path}: " in msg or f" {path}." in msg, msg
    assert reason in msg, msg


GOOD_RULES = """
[[rules]]
hazards = "*"
step = "warning"
targets = [{ level = "township", roles = ["township_head"], confirm_minutes = 20, ladder = "standard" }]
"""


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (
            BASE + GOOD_RULES.replace('step = "warning"', 'step = "warn"'),
            "rules[0].step",
            "unknown step",
        ),
        (BASE + GOOD_RULES.replace('hazards = "*"', 'hazards = "all"'), "rules[0].hazards", "list"),
        (
            BASE + GOOD_RULES.replace('hazards = "*"', 'hazards = ["*", "flood"]'),
            "rules[0].hazards",
            "on its own",
        ),
        (BASE + GOOD_RULES.replace('hazards = "*"', "hazards = []"), "rules[0].hazards", "empty"),
        (
            BASE + GOOD_RULES.replace('hazards = "*"', 'hazard = "*"'),
            "rules[0].hazard",
            "unknown key",
        ),
        (BASE + GOOD_RULES.replace('hazards = "*"\n', ""), "rules[0].hazards", "missing"),
        (
            BASE + GOOD_RULES.replace("targets = [", "targets = [] #"),
            "rules[0].targets",
            "non-empty",
        ),
        (BASE, "rules", "missing"),
        ("rules = []\n" + BASE, "rules", "non-empty"),
        ("chanels = ['sms']\n" + BASE + GOOD_RULES, "chanels", "unknown key"),
        (BASE.replace('["sms", "voice"]', "[]") + GOOD_RULES, "channels", "empty"),
        ("forecast_lead_hours = 0\n" + BASE + GOOD_RULES, "forecast_lead_hours", "positive"),
        ("forecast_lead_hours = 2\n" + BASE + GOOD_RULES, "warning_lead_hours", "shorter"),
        ("[ladders]\n" + GOOD_RULES, "ladders", "at least one"),
        (BASE + "[ladders.x]\nrungs = []\n" + GOOD_RULES, "ladders.x.rungs", "non-empty"),
        (
            BASE + '[ladders.x]\nrungs = [{ action = "resend", wait_minutes = 5 }]\n' + GOOD_RULES,
            "ladders.x.rungs[0].action",
            "last rung must be duty_room",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "duty_room" }, { action = "duty_room" }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].action",
            "only be the last",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "resend" }, { action = "duty_room" }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].wait_minutes",
            "missing",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "resend", wait_minutes = 0 }, { action = "duty_room" }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].wait_minutes",
            "positive",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "duty_room", wait_minutes = 5 }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].wait_minutes",
            "no wait",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "call_mum", wait_minutes = 5 }, { action = "duty_room" }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].action",
            "unknown action",
        ),
        (
            BASE
            + '[ladders.x]\nrungs = [{ action = "resend", wait_minutes = 5, channels = ["fax"] }, { action = "duty_room" }]\n'
            + GOOD_RULES,
            "ladders.x.rungs[0].channels[0]",
            "unknown channel",
        ),
        (BASE + "[ladders.x]\nrung = []\n" + GOOD_RULES, "ladders.x.rung", "unknown key"),
    ],
)
def test_file_errors_name_path_and_reason(roles: Roles, text: str, path: str, reason: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(text, roles, source="test.toml")
    msg = str(e.value)
    assert msg.startswith("test.toml: ")
    assert f" {path}: " in msg or f" {path}." in msg, msg
    assert reason in msg, msg


def test_invalid_toml_and_missing_file(roles: Roles, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^bad\.toml: not valid TOML"):
        parse_policy("rules = [", roles, source="bad.toml")
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=re.escape(str(missing))):
        load_policy(missing, roles)


def test_load_policy_reads_given_path_and_names_it_in_errors(roles: Roles, tmp_path: Path) -> None:
    f = tmp_path / "county.toml"
    f.write_text(BASE + GOOD_RULES.replace("township_head", "nobody"), encoding="utf-8")
    with pytest.raises(PolicyError) as e:
        load_policy(f, roles)
    assert str(e.value).startswith(f"{f}: rules[0].targets[0].roles[0]: unknown role 'nobody'")
    f.write_text(BASE + GOOD_RULES, encoding="utf-8")
    assert load_policy(f, roles).source == str(f)


def test_policy_error_is_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


# ------------------------------------------------------------------ Ladder invariants


def test_ladder_validates_shape() -> None:
    duty = Rung(Action.DUTY_ROOM, timedelta(0))
    resend = Rung(Action.RESEND, timedelta(minutes=5))
    assert Ladder("ok", (resend, duty)).rungs[-1] is duty
    with pytest.raises(ValueError, match="no rungs"):
        Ladder("x", ())
    with pytest.raises(ValueError, match="must end"):
        Ladder("x", (resend,))
    with pytest.raises(ValueError, match="only be the last"):
        Ladder("x", (duty, resend, duty))
    with pytest.raises(ValueError, match="positive wait"):
        Ladder("x", (Rung(Action.RESEND, timedelta(0)), duty))


# ------------------------------------------------------------------ step_from_lead

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lead", "step"),
    [
        (timedelta(hours=12), Step.FORECAST),
        (timedelta(hours=6), Step.FORECAST),
        (timedelta(hours=6) - timedelta(seconds=1), Step.WARNING),
        (timedelta(hours=3), Step.WARNING),
        (timedelta(hours=3) - timedelta(seconds=1), Step.IMMINENT),
        (timedelta(minutes=20), Step.IMMINENT),
        (timedelta(0), Step.IMMINENT),
        (timedelta(hours=-1), Step.IMMINENT),  # onset already passed
    ],
)
def test_step_from_lead(policy: Policy, lead: timedelta, step: Step) -> None:
    assert step_from_lead(T0, T0 + lead, policy) is step


def test_step_from_lead_without_onset_is_imminent(policy: Policy) -> None:
    assert step_from_lead(T0, None, policy) is Step.IMMINENT


def test_step_from_lead_uses_policy_leads(roles: Roles) -> None:
    p = make(roles, GOOD_RULES, base="forecast_lead_hours = 12\nwarning_lead_hours = 4\n" + BASE)
    assert step_from_lead(T0, T0 + timedelta(hours=6), p) is Step.WARNING
    assert step_from_lead(T0, T0 + timedelta(hours=3), p) is Step.IMMINENT
    assert step_from_lead(T0, T0 + timedelta(hours=12), p) is Step.FORECAST
