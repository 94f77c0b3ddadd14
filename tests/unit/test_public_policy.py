"""When the public is reached: policy.toml's [[public]] rules (warnd.core.public_policy)."""

from __future__ import annotations

import pytest

from warnd.config import PolicyError, load_roles, parse_policy
from warnd.config.files import package_default
from warnd.core.domain import Colour, Step
from warnd.core.public_policy import DEFAULT_PUBLIC_RULES, public_rule_for

BASE = package_default("policy.toml").read_text(encoding="utf-8").split("\n# When the public is reached")[0]


def _policy(extra: str) -> object:
    return parse_policy(BASE + extra, load_roles())


def test_by_default_the_imminent_step_and_a_red_warning_reach_the_public() -> None:
    rules = DEFAULT_PUBLIC_RULES
    assert public_rule_for(rules, "rainstorm", Colour.BLUE, Step.IMMINENT) is not None
    assert public_rule_for(rules, "rainstorm", Colour.RED, Step.WARNING) is not None
    assert public_rule_for(rules, "rainstorm", Colour.ORANGE, Step.WARNING) is None
    assert public_rule_for(rules, "rainstorm", Colour.RED, Step.FORECAST) is None
    assert _policy("").public == DEFAULT_PUBLIC_RULES  # type: ignore[attr-defined]


def test_a_rule_naming_the_hazard_wins_and_kinds_and_templates_are_kept() -> None:
    p = _policy('''
[[public]]
name = "all_imminent"
steps = ["imminent"]

[[public]]
name = "flood_danger_zone"
hazards = ["Flash_Flood"]
steps = ["imminent", "warning"]
colours = ["orange", "red"]
kinds = ["danger_zone"]
template = "flood_public"
''')
    rules = p.public  # type: ignore[attr-defined]
    flood = public_rule_for(rules, "flash_flood", Colour.RED, Step.IMMINENT)
    assert flood is not None and flood.name == "flood_danger_zone" and flood.kinds == ("danger_zone",)
    assert flood.template == "flood_public"
    other = public_rule_for(rules, "rainstorm", Colour.RED, Step.IMMINENT)
    assert other is not None and other.name == "all_imminent" and len(other.kinds) == 5
    assert public_rule_for(rules, "rainstorm", Colour.RED, Step.WARNING) is None  # no default rules any more
    assert parse_policy("public = []\n" + BASE, load_roles()).public == ()  # a top-level key


@pytest.mark.parametrize(("extra", "message"), [
    ('[[public]]\nsteps = ["soon"]\n', "public[0].steps"),
    ('[[public]]\nsteps = ["imminent"]\nkinds = ["tourists"]\n', "unknown list kind 'tourists'"),
    ('[[public]]\nsteps = ["imminent"]\ncolours = ["pink"]\n', "public[0].colours"),
    ('[[public]]\nstep = ["imminent"]\n', "public[0]"),
])
def test_mistakes_name_the_rule(extra: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _policy(extra)
