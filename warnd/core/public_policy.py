"""When the public is reached (policy.toml's [[public]] rules): by hazard × colour × step,
which list kinds, on which channel, with which template. Pure values.

Default (a policy without [[public]]): the imminent step of every warning, and the warning
step of a red one, to every list kind, by SMS with the `public` template.
"""

from __future__ import annotations

from dataclasses import dataclass

from warnd.core.domain import Colour, Step

ALL_KINDS: tuple[str, ...] = ("danger_zone", "grid", "subscriber", "visitor", "worker")


@dataclass(frozen=True)
class PublicRule:
    name: str
    steps: frozenset[Step]
    colours: frozenset[Colour] = frozenset(Colour)
    hazards: frozenset[str] | None = None  # None: every hazard; codes casefolded
    kinds: tuple[str, ...] = ALL_KINDS
    channel: str = "sms"
    template: str = "public"

    def matches(self, hazard: str, colour: Colour, step: Step) -> bool:
        return (step in self.steps and colour in self.colours
                and (self.hazards is None or hazard.strip().casefold() in self.hazards))


DEFAULT_PUBLIC_RULES: tuple[PublicRule, ...] = (
    PublicRule("imminent", frozenset({Step.IMMINENT})),
    PublicRule("red_warning", frozenset({Step.WARNING}), frozenset({Colour.RED})),
)


def public_rule_for(rules: tuple[PublicRule, ...], hazard: str, colour: Colour, step: Step) -> PublicRule | None:
    """The rule that reaches the public for this warning, or None. A rule naming the hazard
    wins over a wildcard one; otherwise the first matching rule in file order."""
    h = hazard.strip().casefold()
    matching = [r for r in rules if r.matches(hazard, colour, step)]
    specific = [r for r in matching if r.hazards is not None and h in r.hazards]
    chosen = specific or matching
    return chosen[0] if chosen else None
